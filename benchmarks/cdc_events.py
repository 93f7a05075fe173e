"""Synthetic Debezium change events of shop sessions, as JsonConverter writes them with schemas.

The envelope is the one of `tests/fixtures/debezium/schema_precise_decimals.jsonl` (captured from
our connector with the converter defaults): key and value are `{"schema": …, "payload": …}`,
decimals are Connect decimals (base64 two's-complement, scale 2), timestamptz columns are
ZonedTimestamp strings, LSNs increase. Both our consumer and Debezium's JDBC sink read them.
`prefill` writes them to scratch topics `<prefix>.public.<table>`.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console
from rich.progress import Progress

TABLES = ("sessions", "page_views", "searches", "cart_events", "transactions", "transaction_items")
PARTITIONS = 3  # as our connector creates CDC topics

# Connect schemas of the column types the shop's tables use (see sql/oltp).
_STRING = {"type": "string"}
_INT32 = {"type": "int32"}
_INT64 = {"type": "int64"}
_ID = {"type": "int64", "default": 0}  # bigserial primary keys carry their default
_MONEY = {
    "type": "bytes",
    "name": "org.apache.kafka.connect.data.Decimal",
    "version": 1,
    "parameters": {"scale": "2", "connect.decimal.precision": "12"},
}
_ZONED = {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1}

# table -> (primary key, [(column, schema, optional)])
COLUMNS: dict[str, tuple[str, list[tuple[str, dict[str, Any], bool]]]] = {
    "sessions": (
        "session_id",
        [
            ("session_id", _STRING, False),
            ("customer_id", _INT32, False),
            ("device", _STRING, False),
            ("started_at", _ZONED, False),
            ("ended_at", _ZONED, True),
        ],
    ),
    "page_views": (
        "page_view_id",
        [
            ("page_view_id", _ID, False),
            ("session_id", _STRING, False),
            ("customer_id", _INT32, False),
            ("page_type", _STRING, False),
            ("product_id", _INT32, True),
            ("viewed_at", _ZONED, False),
        ],
    ),
    "searches": (
        "search_id",
        [
            ("search_id", _ID, False),
            ("session_id", _STRING, False),
            ("customer_id", _INT32, False),
            ("query", _STRING, False),
            ("results_count", _INT32, False),
            ("searched_at", _ZONED, False),
        ],
    ),
    "cart_events": (
        "cart_event_id",
        [
            ("cart_event_id", _ID, False),
            ("session_id", _STRING, False),
            ("customer_id", _INT32, False),
            ("product_id", _INT32, False),
            ("action", _STRING, False),
            ("quantity", _INT32, False),
            ("unit_price", _MONEY, False),
            ("amount", _MONEY, False),
            ("created_at", _ZONED, False),
        ],
    ),
    "transactions": (
        "transaction_id",
        [
            ("transaction_id", _ID, False),
            ("customer_id", _INT32, False),
            ("session_id", _STRING, True),
            ("total_amount", _MONEY, False),
            ("payment_method", _STRING, False),
            ("status", _STRING, False),
            ("created_at", _ZONED, False),
            ("updated_at", _ZONED, False),
        ],
    ),
    "transaction_items": (
        "transaction_item_id",
        [
            ("transaction_item_id", _ID, False),
            ("transaction_id", _INT64, False),
            ("product_id", _INT32, False),
            ("quantity", _INT32, False),
            ("unit_price", _MONEY, False),
            ("amount", _MONEY, False),
            ("created_at", _ZONED, False),
        ],
    ),
}

_SNAPSHOT_VALUES = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
_SOURCE_SCHEMA = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.data.Enum",
            "version": 1,
            "parameters": {"allowed": _SNAPSHOT_VALUES},
            "default": "false",
            "field": "snapshot",
        },
        {"type": "string", "optional": False, "field": "db"},
        {"type": "string", "optional": True, "field": "sequence"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
        {"type": "string", "optional": False, "field": "schema"},
        {"type": "string", "optional": False, "field": "table"},
        {"type": "int64", "optional": True, "field": "txId"},
        {"type": "int64", "optional": True, "field": "lsn"},
        {"type": "int64", "optional": True, "field": "xmin"},
        {"type": "string", "optional": True, "field": "origin"},
        {"type": "int64", "optional": True, "field": "origin_lsn"},
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.Source",
    "version": 1,
    "field": "source",
}
_TRANSACTION_SCHEMA = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "id"},
        {"type": "int64", "optional": False, "field": "total_order"},
        {"type": "int64", "optional": False, "field": "data_collection_order"},
    ],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}


def key_schema(prefix: str, table: str) -> dict[str, Any]:
    pk, columns = COLUMNS[table]
    fields = [{**schema, "optional": False, "field": name} for name, schema, _ in columns if name == pk]
    return {"type": "struct", "fields": fields, "optional": False, "name": f"{prefix}.public.{table}.Key"}


def value_schema(prefix: str, table: str) -> dict[str, Any]:
    _, columns = COLUMNS[table]
    row = [{**schema, "optional": optional, "field": name} for name, schema, optional in columns]
    row_name = f"{prefix}.public.{table}.Value"
    return {
        "type": "struct",
        "fields": [
            {"type": "struct", "fields": row, "optional": True, "name": row_name, "field": "before"},
            {"type": "struct", "fields": row, "optional": True, "name": row_name, "field": "after"},
            _SOURCE_SCHEMA,
            _TRANSACTION_SCHEMA,
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "ts_us"},
            {"type": "int64", "optional": True, "field": "ts_ns"},
        ],
        "optional": False,
        "name": f"{prefix}.public.{table}.Envelope",
        "version": 2,
    }


def connect_decimal(value: Decimal, scale: int = 2) -> str:
    """A Connect Decimal's JSON form: the unscaled value as base64 big-endian two's complement."""
    unscaled = int(value.scaleb(scale))
    return base64.b64encode(unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)).decode()


def zoned(at: datetime) -> str:
    """ZonedTimestamp: ISO-8601 in UTC with a Z, as Debezium renders timestamptz."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ChangeStream:
    """Change events of shop sessions with increasing LSNs; `rows` counts the distinct rows per table."""

    def __init__(self, prefix: str, seed: int = 1) -> None:
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.lsn = 1_000_000
        self.rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.events = 0
        self.now = datetime.now(UTC) - timedelta(hours=1)
        self._encode = msgspec.json.Encoder().encode
        # The schemas are the same for every message of a table: serialize them once.
        self._wrappers = {
            table: (self._wrapper(key_schema(prefix, table)), self._wrapper(value_schema(prefix, table)))
            for table in TABLES
        }

    def session(self) -> Iterator[tuple[str, bytes, bytes]]:
        """One visit: session start, page views, a search, cart adds, maybe an order, session end."""
        rng = self.rng
        customer = rng.randint(1, 1000)
        start = self.now = self.now + timedelta(milliseconds=rng.randint(1, 50))
        session = {
            "session_id": f"bench_{uuid.uuid4().hex[:16]}",
            "customer_id": customer,
            "device": "mobile",
            "started_at": zoned(start),
            "ended_at": None,
        }
        common = {"session_id": session["session_id"], "customer_id": customer}
        yield self._change("sessions", session, "c")
        for step in range(rng.randint(3, 9)):
            view = {**common, "page_type": "product", "product_id": rng.randint(1, 200)}
            yield self._insert("page_views", {**view, "viewed_at": zoned(start + timedelta(seconds=step))})
        search = {**common, "query": "running shoes", "results_count": 12}
        yield self._insert("searches", {**search, "searched_at": zoned(start + timedelta(seconds=10))})
        items = [(rng.randint(1, 200), rng.randint(1, 3), Decimal(rng.randint(199, 99999)) / 100) for _ in range(3)]
        items = items[: rng.randint(0, 3)]
        for product, quantity, price in items:
            yield self._insert(
                "cart_events",
                {
                    **common,
                    "product_id": product,
                    "action": "add",
                    "quantity": quantity,
                    "unit_price": connect_decimal(price),
                    "amount": connect_decimal(price * quantity),
                    "created_at": zoned(start + timedelta(seconds=12)),
                },
            )
        if items and rng.random() < 0.5:
            yield from self._order(common, items, zoned(start + timedelta(seconds=20)))
        yield self._change("sessions", {**session, "ended_at": zoned(start + timedelta(seconds=30))}, "u")

    def _order(self, common: dict[str, Any], items: list, at: str) -> Iterator[tuple[str, bytes, bytes]]:
        total = sum((price * quantity for _, quantity, price in items), Decimal("0"))
        order = {
            "transaction_id": self._next_id("transactions"),
            **common,
            "total_amount": connect_decimal(total),
            "payment_method": "card",
            "status": "pending",
            "created_at": at,
            "updated_at": at,
        }
        yield self._change("transactions", order, "c")
        for product, quantity, price in items:
            line = {
                "transaction_id": order["transaction_id"],
                "product_id": product,
                "quantity": quantity,
                "unit_price": connect_decimal(price),
                "amount": connect_decimal(price * quantity),
                "created_at": at,
            }
            yield self._insert("transaction_items", line)

    def _insert(self, table: str, row: dict[str, Any]) -> tuple[str, bytes, bytes]:
        pk = COLUMNS[table][0]
        return self._change(table, {pk: self._next_id(table), **row}, "c")

    def _next_id(self, table: str) -> int:
        self.rows[table] += 1
        return self.rows[table]

    def _change(self, table: str, row: dict[str, Any], op: str) -> tuple[str, bytes, bytes]:
        if table == "sessions" and op == "c":
            self.rows[table] += 1
        self.events += 1
        self.lsn += 88
        ts_ms = int(self.now.timestamp() * 1000)
        source = {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": self.prefix,
            "ts_ms": ts_ms,
            "snapshot": "false",
            "db": "instashop",
            "sequence": f'[null,"{self.lsn}"]',
            "ts_us": ts_ms * 1000,
            "ts_ns": ts_ms * 1_000_000,
            "schema": "public",
            "table": table,
            "txId": self.lsn // 1000,
            "lsn": self.lsn,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        }
        envelope = {"before": None, "after": row, "source": source, "transaction": None, "op": op}
        envelope |= {"ts_ms": ts_ms, "ts_us": ts_ms * 1000, "ts_ns": ts_ms * 1_000_000}
        (key_head, key_tail), (value_head, value_tail) = self._wrappers[table]
        pk = COLUMNS[table][0]
        key = key_head + self._encode({pk: row[pk]}) + key_tail
        return f"{self.prefix}.public.{table}", key, value_head + self._encode(envelope) + value_tail

    def _wrapper(self, schema: dict[str, Any]) -> tuple[bytes, bytes]:
        return b'{"schema":' + self._encode(schema) + b',"payload":', b"}"


def topic_names(prefix: str) -> list[str]:
    return [f"{prefix}.public.{table}" for table in TABLES]


def prefill(kafka: dict[str, Any], prefix: str, events: int, console: Console) -> ChangeStream:
    """Create the scratch topics and write at least `events` change events (whole sessions) to them.
    `kafka`: a client config allowed to (kafka_auth.client_config)."""
    admin = AdminClient(kafka)
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topic_names(prefix)]).values():
        future.result()
    # Big lingering lz4 batches: the envelopes repeat their schema, so they compress ~10x.
    producer = Producer(
        {
            **kafka,
            "linger.ms": 50,
            "batch.size": 4_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.kbytes": 1_048_576,
            "message.max.bytes": 10_000_000,
        }
    )
    stream = ChangeStream(prefix)
    with Progress(console=console) as progress:
        task = progress.add_task("pre-filling CDC topics", total=events)
        while stream.events < events:
            for _ in range(100):
                for topic, key, value in stream.session():
                    _produce(producer, topic, key, value)
            progress.update(task, completed=min(stream.events, events))
        progress.update(task, description="flushing")
        if producer.flush(120):
            raise RuntimeError("pre-fill: messages left undelivered after 120 s")
    return stream


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:  # the local queue is full: let librdkafka send some
            producer.poll(0.05)
