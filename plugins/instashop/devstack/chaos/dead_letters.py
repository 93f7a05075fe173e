"""The soak's poison messages and the check that each landed exactly once in the DLQ (table and topic)."""

from __future__ import annotations

import logging
import time
from contextlib import closing
from typing import Any

import psycopg2
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from instashop.capture import topics
from instashop.devstack.chaos.plan import POISON_TOPIC, poison_messages
from instashop.devstack.chaos.probes import kafka_config, query_one
from instashop.devstack.chaos.report import Report
from instashop.settings import Settings

log = logging.getLogger(__name__)


class DeadLetters:
    """The poison the soak puts on a CDC topic, and where it must end up: the DLQ table and topic."""

    def __init__(self, settings: Settings, report: Report) -> None:
        self.settings, self.report = settings, report

    def inject_poison(self, started: float) -> None:
        tag = f"chaos-{int(started)}"
        producer = Producer(kafka_config(self.settings))
        for name, (key, value) in poison_messages(tag).items():

            def delivered(err, message, name=name) -> None:
                if err is None:
                    entry = {"name": name, "topic": message.topic(), "partition": message.partition()}
                    self.report.poison.append(entry | {"offset": message.offset()})

            producer.produce(POISON_TOPIC, key=key, value=value, on_delivery=delivered)
        if producer.flush(30):
            log.error("some poison messages were not delivered")
        names = ", ".join(p["name"] for p in self.report.poison)
        log.info("[%.0f s] injected poison messages into %s: %s", time.time() - started, POISON_TOPIC, names)

    def dlq_positions(self) -> dict[str, Any]:
        """Where the DLQ table and topic end before the soak: older dead letters are not the soak's."""
        row = query_one(self.settings.dwh_readonly_dsn, "SELECT coalesce(max(id), 0) FROM dead_letters")
        consumer = self._dlq_reader()
        try:
            ends = {p: _high(consumer, p) for p in _partitions(consumer, topics.DEAD_LETTERS)}
        finally:
            consumer.close()
        return {"table_id": row[0] if row else 0, "topic_ends": ends}

    def _dlq_reader(self) -> Consumer:
        return Consumer(
            {
                **kafka_config(self.settings),
                "group.id": "instashop-chaos",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    def check_dlq(self, baseline: dict[str, Any]) -> None:
        """The dead letters since the soak began, in the table and on the topic, by source offset."""
        expected = sorted([p["topic"], p["partition"], p["offset"]] for p in self.report.poison)
        table: list[list[Any]] = []
        deadline = time.time() + 60
        while time.time() < deadline:
            rows = self._dead_letters_after(baseline["table_id"])
            table = sorted([t, p, o] for t, p, o in rows)
            if len(table) >= len(expected):
                break
            time.sleep(2)
        on_topic = self._dlq_topic_after(baseline["topic_ends"])
        self.report.dlq = {
            "expected": expected,
            "table": table,
            "topic": sorted(set(map(tuple, on_topic))),
            "topic_messages": len(on_topic),  # more than distinct: a redelivered batch published it twice
        }
        log.info(
            "DLQ: %d poison injected, %d in dead_letters, %d on the topic", len(expected), len(table), len(on_topic)
        )

    def _dead_letters_after(self, last_id: int) -> list[tuple]:
        with closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as conn, conn.cursor() as cur:
            cur.execute("SELECT topic, kafka_partition, kafka_offset FROM dead_letters WHERE id > %s", (last_id,))
            return cur.fetchall()

    def _dlq_topic_after(self, ends: dict[int, int]) -> list[list[Any]]:
        """The source (topic, partition, offset) of every DLQ message after the baseline."""
        consumer = self._dlq_reader()
        found: list[list[Any]] = []
        try:
            partitions = _partitions(consumer, topics.DEAD_LETTERS)
            targets = {p: _high(consumer, p) for p in partitions}
            consumer.assign([TopicPartition(topics.DEAD_LETTERS, p, ends.get(p, OFFSET_BEGINNING)) for p in partitions])
            remaining = {p for p in partitions if targets[p] > ends.get(p, 0)}
            deadline = time.time() + 60
            while remaining and time.time() < deadline:
                for message in consumer.consume(500, 1.0):
                    if message.error() is not None:
                        continue
                    raw = message.headers() or []
                    pairs = raw.items() if isinstance(raw, dict) else raw  # a consumed message's are a list
                    headers = {k: v.decode() for k, v in pairs if isinstance(v, bytes)}
                    found.append([headers.get("dlq.topic"), int(headers["dlq.partition"]), int(headers["dlq.offset"])])
                    partition, offset = message.partition(), message.offset()
                    if partition is not None and offset is not None and offset + 1 >= targets[partition]:
                        remaining.discard(partition)
        finally:
            consumer.close()
        return found


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    return sorted(meta.partitions) if meta and not meta.error else []


def _high(consumer: Consumer, partition: int) -> int:
    return consumer.get_watermark_offsets(TopicPartition(topics.DEAD_LETTERS, partition), timeout=10)[1]
