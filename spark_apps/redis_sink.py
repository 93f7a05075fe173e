"""Window aggregates -> Redis `live:` keys, through instashop.live_metrics (the key schema).

Two sinks for the two triggers, both writing absolute values (HSET/ZADD, never INCR), pipelined:
- `BatchSink`, micro-batch `foreachBatch`: the batch's changed groups (a few hundred rows) are
  collected on the driver and written in one pipeline. A replayed batch writes the same values.
- `RealTimeSink`, Real-time Mode `foreach` (foreachBatch is not allowed there): runs in the Python
  workers; keeps only the newest row per group and flushes every `flush_ms`, so a burst of
  updates to one window costs one write. After a failure Spark re-runs the batch from its start
  offsets: values may step back briefly, then reach the same final (exact) values. Its latency is
  bounded by PySpark's JVM-to-Python row batching (see the app's docstring), not by this flush.
This module is shipped to the workers (SparkContext.addPyFile), so it imports nothing from spark_apps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import redis

from instashop import live_metrics

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

    def __init__(self, url: str, prefix: str, on_batch: Callable[[int, datetime | None], None] | None = None):
        self.url, self.prefix, self.on_batch = url, prefix, on_batch
        self._client: redis.Redis | None = None

    def __call__(self, batch, batch_id: int) -> None:
        rows = batch.collect()
        client = self._client = self._client or connect(self.url)
        write(client, (to_aggregate(r) for r in rows), self.prefix)
        if any(r["grp"] == "product" for r in rows):
            live_metrics.refresh_top_products(client, prefix=self.prefix)
        if self.on_batch:
            self.on_batch(batch_id, max((r["last_event_time"] for r in rows), default=None))


class RealTimeSink:
    """ForeachWriter for Real-time Mode: per task, newest row per group, flushed every flush_ms."""

    def __init__(self, url: str, prefix: str, flush_ms: int = 20):
        self.url, self.prefix, self.flush_ms = url, prefix, flush_ms

    def open(self, partition_id: int, epoch_id: int) -> bool:
        self._client = connect(self.url)
        self._pending: dict[GroupKey, live_metrics.Aggregate] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._error: BaseException | None = None
        # Rows arrive one by one: a timer flushes what is pending even when no further row comes.
        self._flusher = threading.Thread(target=self._flush_periodically, daemon=True)
        self._flusher.start()
        return True

    def process(self, row) -> None:
        if self._error:
            raise RuntimeError(f"writing to Redis failed: {self._error}") from self._error
        agg = to_aggregate(row)
        with self._lock:
            self._pending[(agg.width, agg.start, agg.group, agg.dim)] = agg

    def close(self, error: BaseException | None) -> None:
        self._closed.set()
        self._flusher.join()
        if error is None:
            self._flush()
        self._client.close()
        if self._error and error is None:
            raise RuntimeError(f"writing to Redis failed: {self._error}") from self._error

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.flush_ms / 1000):
            try:
                self._flush()
            except redis.RedisError as err:  # surfaced by the next process() call
                self._error = err
                return

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            write(self._client, pending.values(), self.prefix)
