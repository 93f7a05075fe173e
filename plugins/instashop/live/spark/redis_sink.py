"""Window aggregates -> Redis `live:` keys, through instashop.live.metrics (the key schema).

Absolute values (HSET/ZADD, never INCR), pipelined. `BatchSink` is the micro-batch `foreachBatch`:
the batch's changed groups (a few hundred rows) are collected on the driver and written in one
pipeline; a replayed batch writes the same values. Real-time Mode writes through redis_relay, with
the same `write`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import redis

from instashop.live import metrics as live_metrics

GroupKey = tuple[str, int, str, str]


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def to_aggregate(row: Any) -> live_metrics.Aggregate:
    """A row of realtime_aggregation.window_aggregates -> the schema's Aggregate."""
    return live_metrics.Aggregate(
        width=row["width"],
        start=int(row["start"]),
        group=row["grp"],
        dim=row["dim"],
        count=int(row["count"]),
        amount=row["amount"],
        units=None if row["units"] is None else int(row["units"]),
        customers=None if row["customers"] is None else int(row["customers"]),
        name=row["name"],
        category=row["category"],
    )


def write(client: redis.Redis, aggregates: Iterable[live_metrics.Aggregate], prefix: str) -> int:
    """One pipelined round trip (no MULTI: each write is absolute, partial batches heal on replay)."""
    writes = live_metrics.commands(aggregates, prefix)
    if writes:
        pipe = client.pipeline(transaction=False)
        live_metrics.apply(pipe, writes)
        pipe.execute()
    return len(writes)


class BatchSink:
    """foreachBatch(df, batch_id): write the groups the batch changed, then refresh the top products."""

    def __init__(self, url: str, prefix: str, on_rows: Callable[[datetime | None], None] | None = None):
        self.url, self.prefix, self.on_rows = url, prefix, on_rows
        self._client: redis.Redis | None = None

    def __call__(self, batch, batch_id: int) -> None:
        rows = batch.collect()
        client = self._client = self._client or connect(self.url)
        write(client, (to_aggregate(r) for r in rows), self.prefix)
        if any(r["grp"] == "product" for r in rows):
            live_metrics.refresh_top_products(client, prefix=self.prefix)
        if self.on_rows:
            self.on_rows(max((r["last_event_time"] for r in rows), default=None))
