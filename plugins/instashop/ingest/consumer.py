"""`instashop consume`: the CDC topics into the DWH, each business event exactly once.

The loop: take a batch of messages -> decode and map each (bad ones become dead letters) -> write
the batch in one DWH transaction -> publish dead letters and enriched transaction items -> commit
the Kafka offsets. A crash anywhere before the offset commit means the batch is delivered again,
and the DWH writer's LSN guard makes that second delivery a no-op.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from psycopg2.extensions import connection

from instashop import kafka_auth
from instashop.capture import topics
from instashop.capture.connector import CDC_TOPIC_PATTERN
from instashop.ingest.dead_letters import DeadLetter, dlq_message
from instashop.ingest.decode import Rejected, decode_message
from instashop.ingest.events import DimensionRow, EventRow, SessionRow
from instashop.ingest.warehouse_writer import Batch, WarehouseWriter, WriteResult
from instashop.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_COMPONENT = "consumer"
CONSUME_SLICE = 1000  # messages per consume() call (see DwhConsumer._poll)
# While catching up, how often the sessions of the batches written meanwhile are recomputed: a
# session's events are spread over many catch-up batches and are aggregated once, not per batch.
# Its topics are read side by side, not in step, so one session's events come in all through a
# catch-up: with 5 s, the ingest benchmark's 300k events recomputed each session about 3 times.
SESSION_REFRESH_INTERVAL = 30.0


@dataclass(frozen=True)
class ConsumerOptions:
    batch_size: int = 5000
    # How long to wait for a batch to fill: the latency added when traffic is light.
    batch_timeout: float = 0.1
    group_id: str = "instashop-dwh"
    # Static group membership: a restarted consumer with the same id takes its partitions back at
    # once instead of waiting for the group to drop its dead predecessor (the 45 s session timeout).
    # Each consumer of a group running at the same time needs its own id; a second process with the
    # same id fences the first (a fatal error that stops it, loudly).
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}-1")
    heartbeat_interval: float = 5.0
    topic_pattern: str = CDC_TOPIC_PATTERN
    # Another warehouse database and output topics (the benchmarks write to scratch copies).
    dwh_dsn: str | None = None
    enriched_items_topic: str = topics.ENRICHED_TRANSACTION_ITEMS
    dead_letters_topic: str = topics.DEAD_LETTERS


def to_batch(messages: list[Message]) -> Batch:
    """Decode and map messages; each one that fails becomes a dead letter with the reason."""
    batch = Batch()
    for message in messages:
        row = decode_message(_where(message)[0], message.key(), message.value())
        if isinstance(row, EventRow):
            batch.events.append(row)
        elif isinstance(row, DimensionRow):
            batch.dimensions.append(row)
        elif isinstance(row, SessionRow):
            batch.sessions.append(row)
        elif isinstance(row, Rejected):
            batch.dead_letters.append(_dead_letter(message, row.reason))
    batch.staged()  # the COPY text is built here, on the decode thread, not on the DWH writer's
    return batch


def _dead_letter(message: Message, reason: str) -> DeadLetter:
    return DeadLetter(*_where(message), message.key(), message.value(), reason)


def _where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (only error events lack them, and the poll
    loop never hands those on)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"not a consumed message: {message.error()}")
    return topic, partition, offset


class DwhConsumer:
    """Runs the loop until `stop()` (SIGTERM/SIGINT): the batch in flight is finished and committed."""

    def __init__(self, settings: Settings, options: ConsumerOptions | None = None) -> None:
        self.options = options or ConsumerOptions()
        self.settings = settings
        self._stopping = False
        self._stats = {"batches": 0, "messages": 0, "events_written": 0, "dead_letters": 0}
        self._last_heartbeat = 0.0
        self._sessions_refreshed = 0.0
        self._sessions_deferred = False  # the last batch queued its sessions instead of refreshing them

    @property
    def stats(self) -> dict[str, int]:
        """Batches, messages, events written and dead letters since start."""
        return dict(self._stats)

    def stop(self, *_: Any) -> None:
        log.info("stop requested: finishing the current batch")
        self._stopping = True

    def run(self) -> None:
        consumer = Consumer(self._consumer_config())
        producer = Producer(self._producer_config())
        dwh = _DwhConnection(self.options.dwh_dsn or self.settings.dwh_dsn)
        dwh.writer()  # fail fast at start if the DWH is unreachable
        consumer.subscribe([self.options.topic_pattern])
        log.info(
            "consuming %s as group %s, member %s",
            self.options.topic_pattern,
            self.options.group_id,
            self.options.instance_id,
        )
        # One writer thread owns the DWH connection: batch N is written while batch N+1 is fetched and
        # decoded. Batches are still written, published and committed strictly in order.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwh-writer")
        in_flight: _InFlight | None = None
        try:
            while not self._stopping:
                messages = self._poll(consumer)
                batch = to_batch(messages) if messages else None
                if in_flight is not None:
                    self._finish(in_flight, producer, consumer)
                    in_flight = None
                if batch is None and self._sessions_deferred:
                    batch = Batch()  # caught up: recompute the sessions queued meanwhile
                if batch is not None:
                    defer = self._defer_sessions(len(messages))
                    in_flight = _InFlight(messages, batch, writer.submit(self._write, dwh, batch, defer))
                writer.submit(self._maybe_heartbeat, dwh)
            if in_flight is not None:  # stop requested: the batch in flight is finished and committed
                self._finish(in_flight, producer, consumer)
        finally:
            writer.shutdown(wait=True)
            producer.flush(10)
            consumer.close()  # leaves the group at once: a restarted consumer need not wait
            dwh.close()
            log.info("stopped after %s", self._stats)

    def _poll(self, consumer: Consumer) -> list[Message]:
        """Up to batch_size messages, waiting at most batch_timeout for them.

        Taken in slices: consume() holds the GIL while it makes each Message, ~100 ms for 20,000,
        and the DWH writer thread could not even read a query result meanwhile.
        """
        messages: list[Message] = []
        deadline = time.monotonic() + self.options.batch_timeout
        while len(messages) < self.options.batch_size:
            wanted = min(CONSUME_SLICE, self.options.batch_size - len(messages))
            taken = consumer.consume(wanted, max(0.0, deadline - time.monotonic()))
            messages += taken
            if len(taken) < wanted:  # timed out
                break
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.error("Kafka error on %s: %s", message.topic(), error)
                if error.fatal():
                    raise RuntimeError(f"fatal Kafka error: {error}")
        return good

    def _finish(self, in_flight: _InFlight, producer: Producer, consumer: Consumer) -> WriteResult:
        """After the batch's DWH commit: publish its dead letters and items, then commit its offsets."""
        messages, batch = in_flight.messages, in_flight.batch
        result = in_flight.write.result()  # re-raises a write failure: nothing is committed then
        for letter in batch.dead_letters:
            log.warning("dead letter %s[%d]@%d: %s", letter.topic, letter.partition, letter.offset, letter.reason)
            dlq = dlq_message(letter)
            producer.produce(self.options.dead_letters_topic, key=dlq.key, value=dlq.value, headers=dlq.headers)
        for item in result.items:
            producer.produce(self.options.enriched_items_topic, key=item.event_key, value=item.message)
        undelivered = producer.flush(30)
        if undelivered:
            raise RuntimeError(f"{undelivered} messages to Kafka not delivered; offsets not committed")
        if messages:
            consumer.commit(offsets=_next_offsets(messages), asynchronous=False)
        self._count(messages, result)
        return result

    def _count(self, messages: list[Message], result: WriteResult) -> None:
        self._stats["batches"] += 1
        self._stats["messages"] += len(messages)
        self._stats["events_written"] += result.events_upserted + result.events_deleted
        self._stats["dead_letters"] += result.dead_letters

    def _defer_sessions(self, batch_messages: int) -> bool:
        """Catching up (a full batch), sessions are recomputed every few seconds, not every batch."""
        now = time.monotonic()
        full = batch_messages >= self.options.batch_size
        self._sessions_deferred = full and now - self._sessions_refreshed < SESSION_REFRESH_INTERVAL
        if not self._sessions_deferred:
            self._sessions_refreshed = now
        return self._sessions_deferred

    def _write(self, dwh: _DwhConnection, batch: Batch, defer_sessions: bool) -> WriteResult:
        """Write the batch, waiting out a DWH restart: the batch is kept and written once it is back."""
        delay = 1.0
        while True:
            try:
                return dwh.writer().write(batch, defer_sessions)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as err:
                dwh.close()
                if self._stopping:
                    raise
                log.warning("DWH unavailable (%s); retrying the batch in %.0fs", str(err).strip(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _maybe_heartbeat(self, dwh: _DwhConnection) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= self.options.heartbeat_interval:
            try:
                dwh.writer().heartbeat(HEARTBEAT_COMPONENT, {"pid": os.getpid(), **self._stats})
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as err:
                dwh.close()
                log.warning("heartbeat not written: %s", str(err).strip())
            self._last_heartbeat = now

    def _consumer_config(self) -> dict[str, Any]:
        return {
            **kafka_auth.client_config(self.settings, kafka_auth.CONSUMER),
            "group.id": self.options.group_id,
            "group.instance.id": self.options.instance_id,
            "enable.auto.commit": False,  # offsets only after the DWH commit
            "auto.offset.reset": "earliest",
            # CDC topics appear when a table first changes: notice new ones within seconds.
            "topic.metadata.refresh.interval.ms": 5000,
            "fetch.wait.max.ms": 50,
            "queued.max.messages.kbytes": 262144,
        }

    def _producer_config(self) -> dict[str, Any]:
        return {
            **kafka_auth.client_config(self.settings, kafka_auth.CONSUMER),
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
        }


@dataclass(frozen=True)
class _InFlight:
    """A batch whose DWH write runs on the writer thread."""

    messages: list[Message]
    batch: Batch
    write: Future[WriteResult]


class _DwhConnection:
    """The consumer's DWH connection and writer, re-established after the database went away."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: connection | None = None
        self._writer: WarehouseWriter | None = None

    def writer(self) -> WarehouseWriter:
        if self._writer is None or self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.dsn, application_name="instashop-consumer")
            self._writer = WarehouseWriter(self._conn)
        return self._writer

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = self._writer = None


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last message of the batch (what Kafka commits)."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        topic, partition, offset = _where(m)
        last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]


def run(settings: Settings, options: ConsumerOptions | None = None) -> None:
    consumer = DwhConsumer(settings, options)
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    consumer.run()
