"""Real-time Mode's Redis writer: the query's rows on a Kafka topic -> Redis `live:` keys, in the driver.

Real-time Mode allows no foreachBatch, and PySpark feeds a Python `foreach` writer through a pickler
that waits to fill ~1 MiB batches of rows: seconds at live rates. So the query hands its update rows
to Spark's own (JVM) Kafka sink, on a topic of its own, and this relay, a thread of the app's driver
process, writes them to Redis as they arrive: the newest row of each group in a poll, one pipeline,
then the consumer offsets (at least once). The values are absolute (HSET/ZADD), so a row relayed
twice, or rows Spark emits again when it replays a batch after a failure, write the same final
values; in between, a replayed group may show an older value for a moment.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instashop.live import metrics as live_metrics
from instashop.live.spark.redis_sink import GroupKey, connect, to_aggregate, write

log = logging.getLogger("redis_relay")

POLL_SECONDS = 0.1
MAX_ROWS_PER_WRITE = 5000
TOP_PRODUCTS_SECONDS = 1.0  # the ranking reads 5 minutes of windows: at most once a second


def kafka_records(aggregates: DataFrame) -> tuple[Column, Column]:
    """(key, value) for the Kafka sink: the group, and the row as JSON (nulls kept, decimals exact)."""
    key = F.concat_ws("|", "width", "start", "grp", "dim")
    value = F.to_json(F.struct(*aggregates.columns), {"ignoreNullFields": "false"})
    return key.alias("key"), value.alias("value")


def parse(value: bytes) -> dict[str, Any]:
    """A row of the topic; amounts as exact Decimals."""
    return json.loads(value, parse_float=Decimal)


def newest_per_group(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each group (rows in topic order: a later row holds the group's newer values)."""
    newest: dict[GroupKey, dict[str, Any]] = {}
    for row in rows:
        newest[(row["width"], row["start"], row["grp"], row["dim"])] = row
    return list(newest.values())


class Relay:
    """Consumes the query's topic in a thread and writes what it reads to Redis."""

    def __init__(
        self,
        kafka: dict[str, Any],
        topic: str,
        redis_url: str,
        prefix: str,
        on_rows: Callable[[datetime | None], None] | None = None,
    ) -> None:
        self.topic, self.prefix, self.on_rows = topic, prefix, on_rows
        self.consumer = Consumer(
            {
                **kafka,
                "group.id": f"{topic}.relay",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
        self.client = connect(redis_url)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._drain_until = self._next_top_products = 0.0
        self._thread: threading.Thread | None = None

    def start(self, on_failure: threading.Event) -> None:
        """Relay until stop(); a failure is kept in `error` and sets `on_failure` (the app then exits)."""
        self.consumer.subscribe([self.topic])
        self._thread = threading.Thread(target=self._run, args=(on_failure,), name="redis-relay", daemon=True)
        self._thread.start()

    def stop(self, drain_seconds: float = 5.0) -> None:
        """Relay what the topic still holds (for up to `drain_seconds`), then close."""
        self._drain_until = time.monotonic() + drain_seconds
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self, on_failure: threading.Event) -> None:
        try:
            while True:
                messages = self._poll()
                if messages:
                    self._relay(messages)
                if self._stop.is_set() and (not messages or time.monotonic() > self._drain_until):
                    break
        except Exception as err:  # any failure ends the app: the supervisor restarts it, nothing is lost
            log.exception("relay failed: %s", err)
            self.error = err
            on_failure.set()
        finally:
            self.consumer.close()

    def _poll(self) -> list[Message]:
        first = self.consumer.poll(POLL_SECONDS)
        if first is None:
            return []
        messages = []
        for message in (first, *self.consumer.consume(MAX_ROWS_PER_WRITE - 1, timeout=0)):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.fatal():
                raise KafkaException(error)
            else:  # e.g. the broker restarting: the client reconnects by itself
                log.warning("Kafka: %s", error)
        return messages

    def _relay(self, messages: list[Message]) -> None:
        # Only messages with a value reach here (the Spark Kafka sink writes no tombstones).
        rows = newest_per_group([parse(m.value() or b"") for m in messages])
        write(self.client, (to_aggregate(r) for r in rows), self.prefix)
        if any(r["grp"] == "product" for r in rows) and time.monotonic() >= self._next_top_products:
            live_metrics.refresh_top_products(self.client, prefix=self.prefix)
            self._next_top_products = time.monotonic() + TOP_PRODUCTS_SECONDS
        self.consumer.commit(asynchronous=False)  # after Redis has the values: at least once
        if self.on_rows:
            times = [datetime.fromisoformat(r["last_event_time"]) for r in rows if r["last_event_time"]]
            self.on_rows(max(times, default=None))
