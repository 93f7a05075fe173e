"""Write one consumer batch into the DWH in a single transaction, idempotently.

Events the source inserted (Debezium op "c", nearly all of them) have no warehouse row yet: they
are COPYed straight into realtime_events, with names from the dimensions read in the same
transaction. Should one exist after all (a redelivered batch, a second consumer during a
rebalance), the unique key (event_key, timestamp) rejects the COPY, which is rolled back to its
savepoint and the rows take the merge path instead.

The merge path takes the other events (updates, snapshot reads, deletes): bulk-loaded with COPY
into a session-local staging table, then merged into realtime_events, deletes first, then an upsert
that enriches names from the dimensions. Every merge is guarded by the source LSN
(`source_lsn < incoming`), so a redelivered or replayed change is a no-op and only a newer change
can overwrite a row. The caller commits Kafka offsets only after `write` returns.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec
from psycopg2 import errors
from psycopg2.extras import Json, execute_values

from instashop.ingest.dead_letters import DeadLetter, excerpt
from instashop.ingest.events import DimensionRow, EventRow, SessionRow
from instashop.warehouse.pg_arrays import int_array
from instashop.warehouse.sessions import queue_refresh, refresh_queued

log = logging.getLogger(__name__)

# Rows per multi-row INSERT (execute_values defaults to 100: a round trip per 100 rows).
PAGE_SIZE = 10_000


@dataclass(frozen=True)
class Staged:
    """A batch prepared for the DWH: the newest change per row, in COPY's text format."""

    events: list[EventRow]
    # Inserted at the source, COPYed straight into realtime_events: each with its line up to the names.
    created: list[tuple[EventRow, str]]
    created_items: list[dict[str, Any]]  # the created transaction items' messages, names to fill in
    merged_copy: bytes  # the other events, for staging_events
    sessions_copy: bytes
    session_deletes: list[SessionRow]
    touched_sessions: set[str]  # whose session_data and outcome may change (deleted events add theirs)


@dataclass
class Batch:
    events: list[EventRow] = field(default_factory=list)
    dimensions: list[DimensionRow] = field(default_factory=list)
    sessions: list[SessionRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    _staged: Staged | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.events) + len(self.dimensions) + len(self.sessions) + len(self.dead_letters)

    def staged(self) -> Staged:
        """Built once; the consumer calls it on its decode thread, so the DWH writer only waits on SQL."""
        if self._staged is None:
            events = _latest(self.events, key=lambda e: e.event_key)
            sessions = _latest(self.sessions, key=lambda r: r.session_id)
            created = [e for e in events if e.created]
            merged = [e for e in events if not e.created]
            self._staged = Staged(
                events=events,
                created=[(e, _event_fields(e)) for e in created],
                created_items=[_item_message(e) for e in created if e.event_type == "transaction_item"],
                merged_copy="".join(_staging_line(_event_fields(e), e.deleted) for e in merged).encode(),
                sessions_copy="".join(_session_copy_line(r) for r in sessions if not r.deleted).encode(),
                session_deletes=[r for r in sessions if r.deleted],
                touched_sessions={r.session_id for r in sessions} | {e.session_id for e in events if e.session_id},
            )
        return self._staged


@dataclass(frozen=True)
class EnrichedItem:
    """A transaction item as written to the DWH and published for the Spark app (its Kafka key, its JSON).

    The JSON has event_key, source_lsn, event_time, transaction_id, product_id, product_name,
    category, quantity, unit_price and amount (read by plugins/instashop/live/spark/realtime_events.py).
    """

    event_key: str
    message: bytes


@dataclass(frozen=True)
class WriteResult:
    events_upserted: int
    events_deleted: int
    sessions_changed: int
    dead_letters: int
    items: list[EnrichedItem]


def _event_columns(timestamp: str) -> tuple[str, ...]:
    """The columns of an event's fields in COPY lines, in _event_fields' order."""
    return (
        "event_type",
        timestamp,
        "customer_id",
        "product_id",
        "amount",
        "session_id",
        "raw_data",
        "event_key",
        "source_lsn",
    )


# A staging line adds `deleted`; a created event's realtime_events line, the names read at write time.
_STAGING_COLUMNS = (*_event_columns("ts"), "deleted")

_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_events (
    event_key   varchar(120) NOT NULL,
    source_lsn  bigint       NOT NULL,
    deleted     boolean      NOT NULL,
    event_type  varchar(50)  NOT NULL,
    ts          timestamp,
    customer_id integer,
    product_id  integer,
    amount      numeric(12,2),
    session_id  varchar(255),
    raw_data    jsonb
) ON COMMIT DELETE ROWS
"""

_CREATE_STAGING_SESSIONS = """
CREATE TEMP TABLE IF NOT EXISTS staging_sessions (
    session_id   varchar(255) NOT NULL,
    customer_id  bigint,
    session_data jsonb        NOT NULL,
    ts           timestamp,
    source_lsn   bigint       NOT NULL
) ON COMMIT DELETE ROWS
"""

# session_data is merged: the consumer's aggregates (instashop.sessions) are kept.
_UPSERT_SESSIONS = """
INSERT INTO customer_sessions (session_id, customer_id, session_data, "timestamp", source_lsn)
SELECT session_id, customer_id, session_data, ts, source_lsn FROM staging_sessions
ON CONFLICT (session_id) DO UPDATE
SET customer_id = EXCLUDED.customer_id,
    session_data = coalesce(customer_sessions.session_data, '{}') || EXCLUDED.session_data,
    "timestamp" = EXCLUDED."timestamp", source_lsn = EXCLUDED.source_lsn
WHERE customer_sessions.source_lsn < EXCLUDED.source_lsn
"""

_DELETE_EVENTS = """
DELETE FROM realtime_events e
USING staging_events s
WHERE s.deleted AND e.event_key = s.event_key AND e.source_lsn < s.source_lsn
RETURNING e.session_id
"""

# The enriched-items topic's message, built on both write paths: by the upsert in SQL from the rows
# it wrote (merge path), and in Python from the EventRow for the COPYed created items (their names
# are filled in from the dimensions afterwards). Per field: its name, its SQL expression over the
# upsert's RETURNING columns, and its value from an EventRow. Order is the JSON's key order.
_ITEM_FIELDS: tuple[tuple[str, str, Callable[[EventRow], Any]], ...] = (
    ("event_key", "event_key", lambda e: e.event_key),
    ("source_lsn", "source_lsn", lambda e: e.source_lsn),
    ("event_time", '"timestamp"', lambda e: e.timestamp.isoformat() if e.timestamp else None),
    ("transaction_id", "raw_data->'transaction_id'", lambda e: (e.raw_data or {}).get("transaction_id")),
    ("product_id", "product_id", lambda e: e.product_id),
    ("product_name", "product_name", lambda e: None),
    ("category", "category", lambda e: None),
    ("quantity", "raw_data->'quantity'", lambda e: (e.raw_data or {}).get("quantity")),
    ("unit_price", "raw_data->'unit_price'", lambda e: (e.raw_data or {}).get("unit_price")),
    # realtime_events.amount is numeric(12,2): as its text, two decimals rounded half up.
    ("amount", "amount::text", lambda e: None if e.amount is None else str(e.amount.quantize(_CENT, ROUND_HALF_UP))),
)
_ITEM_JSON = "json_build_object(" + ", ".join(f"'{name}', {expression}" for name, expression, _ in _ITEM_FIELDS) + ")"

# Returns the number of rows written (replays that change nothing write none) and, for the
# enriched-items topic, each transaction item written as its JSON message (_ITEM_FIELDS), built in
# the database so no row has to be converted to Python objects and back.
_UPSERT_EVENTS = f"""
WITH written AS (
INSERT INTO realtime_events (event_type, "timestamp", customer_id, customer_name, product_id, product_name,
                             category, amount, session_id, raw_data, processed_at, source, event_key, source_lsn)
SELECT s.event_type, s.ts, s.customer_id, c.name, s.product_id, p.name, p.category, s.amount, s.session_id,
       s.raw_data, now() AT TIME ZONE 'UTC', 'kafka_consumer', s.event_key, s.source_lsn
FROM staging_events s
LEFT JOIN dim_customers c ON c.customer_id = s.customer_id
LEFT JOIN dim_products p ON p.product_id = s.product_id
WHERE NOT s.deleted
ON CONFLICT (event_key, "timestamp") DO UPDATE
SET event_type = EXCLUDED.event_type, customer_id = EXCLUDED.customer_id,
    customer_name = EXCLUDED.customer_name, product_id = EXCLUDED.product_id,
    product_name = EXCLUDED.product_name, category = EXCLUDED.category, amount = EXCLUDED.amount,
    session_id = EXCLUDED.session_id, raw_data = EXCLUDED.raw_data, processed_at = EXCLUDED.processed_at,
    source_lsn = EXCLUDED.source_lsn
WHERE realtime_events.source_lsn < EXCLUDED.source_lsn
RETURNING event_type, event_key, source_lsn, "timestamp", product_id, product_name, category, amount, raw_data
)
SELECT count(*),
       coalesce(array_agg(event_key) FILTER (WHERE event_type = 'transaction_item'), '{{}}'),
       coalesce(array_agg({_ITEM_JSON}::text) FILTER (WHERE event_type = 'transaction_item'), '{{}}')
FROM written
"""

# processed_at and source take their defaults (the upsert's values).
_CREATED_COLUMNS = (*_event_columns('"timestamp"'), "customer_name", "product_name", "category")
_COPY_CREATED = f"COPY realtime_events ({', '.join(_CREATED_COLUMNS)}) FROM STDIN"
_CUSTOMER_NAMES = "SELECT customer_id, name FROM dim_customers WHERE customer_id = ANY(%s::integer[])"
_PRODUCT_NAMES = "SELECT product_id, name, category FROM dim_products WHERE product_id = ANY(%s::integer[])"

# Events can reach the DWH before their customer or product does (different topics): once a new
# customer/product arrives, its earlier events get their names. Renames do not rewrite history.
_BACKFILL_CUSTOMER_NAMES = """
UPDATE realtime_events e SET customer_name = c.name
FROM dim_customers c
WHERE c.customer_id = ANY(%s) AND e.customer_id = c.customer_id AND e.customer_name IS NULL
"""
_BACKFILL_PRODUCT_NAMES = """
UPDATE realtime_events e SET product_name = p.name, category = p.category
FROM dim_products p
WHERE p.product_id = ANY(%s) AND e.product_id = p.product_id AND e.product_name IS NULL
"""

_DIMENSIONS = {
    "customers": ("dim_customers", "customer_id", ("name", "email", "country", "created_at")),
    "products": ("dim_products", "product_id", ("name", "category", "price", "updated_at")),
}


class WarehouseWriter:
    """Owns one DWH connection (the consumer's role) and writes batches through it."""

    def __init__(self, conn) -> None:
        self.conn = conn
        with conn, conn.cursor() as cur:
            cur.execute(_CREATE_STAGING)
            cur.execute(_CREATE_STAGING_SESSIONS)

    def write(self, batch: Batch, defer_sessions: bool = False) -> WriteResult:
        """Write the batch in one transaction.

        defer_sessions=True queues the sessions the batch touched instead of recomputing them now
        (catching up, the next batches will likely touch them again); the next write without it
        recomputes them together with its own.
        """
        staged = batch.staged()
        with self.conn, self.conn.cursor() as cur:
            new_dimension_keys = self._write_dimensions(cur, batch.dimensions)
            items, upserted, deleted_sessions = self._write_events(cur, staged)
            for table, keys in new_dimension_keys.items():
                cur.execute(_BACKFILL_CUSTOMER_NAMES if table == "customers" else _BACKFILL_PRODUCT_NAMES, (keys,))
            self._write_sessions(cur, staged)
            # A deleted event (its `before` holds only the key) names its session through the DWH row.
            touched = staged.touched_sessions | set(filter(None, deleted_sessions))
            sessions_changed = 0
            if defer_sessions:
                queue_refresh(cur, touched)
            else:
                sessions_changed = refresh_queued(cur, touched)
            self._write_dead_letters(cur, batch.dead_letters)
        return WriteResult(upserted, len(deleted_sessions), sessions_changed, len(batch.dead_letters), items)

    def heartbeat(self, component: str, details: dict[str, Any]) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO pipeline_heartbeats (component, heartbeat_at, details) VALUES (%s, now(), %s) "
                "ON CONFLICT (component) DO UPDATE SET heartbeat_at = now(), details = EXCLUDED.details",
                (component, Json(details)),
            )

    def _write_events(self, cur, staged: Staged) -> tuple[list[EnrichedItem], int, list[str | None]]:
        """Write the events; returns the items written, the count written, the deleted rows' sessions."""
        items, written, merged_copy = [], 0, staged.merged_copy
        if staged.created:
            inserted = self._insert_created(cur, staged)
            if inserted is None:  # some exist already: merge them with the rest
                merged_copy += "".join(_staging_line(fields, deleted=False) for _, fields in staged.created).encode()
            else:
                items, written = inserted, len(staged.created)
        if not merged_copy:
            return items, written, []
        merged_items, upserted, deleted_sessions = self._merge_events(cur, staged, merged_copy)
        return items + merged_items, written + upserted, deleted_sessions

    def _insert_created(self, cur, staged: Staged) -> list[EnrichedItem] | None:
        """COPY the created events into realtime_events; None (and nothing written) if one exists."""
        customers, products = _dimension_names(cur, [e for e, _ in staged.created])
        cur.execute("SAVEPOINT insert_created")
        try:
            _copy(cur, _COPY_CREATED, _created_copy(staged, customers, products))
        except errors.UniqueViolation as err:
            cur.execute("ROLLBACK TO SAVEPOINT insert_created")
            # Its diag held no detail here (an error inside COPY); the first line names the constraint.
            log.info("created events already in the DWH (%s): merging them instead", str(err).splitlines()[0])
            return None
        cur.execute("RELEASE SAVEPOINT insert_created")
        return [_enriched_item(message, products) for message in staged.created_items]

    def _merge_events(self, cur, staged: Staged, merged_copy: bytes) -> tuple[list[EnrichedItem], int, list]:
        """Stage the events and merge them (deletes, then the LSN-guarded upsert)."""
        columns = ", ".join(_STAGING_COLUMNS)
        _copy(cur, f"COPY staging_events ({columns}) FROM STDIN", merged_copy)
        deleted_sessions = []
        if any(e.deleted for e in staged.events):
            cur.execute(_DELETE_EVENTS)
            deleted_sessions = [session_id for (session_id,) in cur.fetchall()]
        cur.execute(_UPSERT_EVENTS)
        upserted, item_keys, item_messages = cur.fetchone()
        items = [EnrichedItem(key, message.encode()) for key, message in zip(item_keys, item_messages, strict=True)]
        return items, upserted, deleted_sessions

    def _write_dimensions(self, cur, rows: list[DimensionRow]) -> dict[str, list[int]]:
        """Upsert/delete dimension rows; returns the keys per table that were new to the DWH."""
        changed: dict[str, list[int]] = {}
        for source, (table, key_column, columns) in _DIMENSIONS.items():
            latest = _latest([r for r in rows if r.table == source], key=lambda r: r.key)
            upserts = [r for r in latest if not r.deleted]
            deletes = [r for r in latest if r.deleted]
            if upserts:
                assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*columns, "source_lsn"))
                changed[source] = [
                    key
                    for key, inserted in execute_values(
                        cur,
                        f"INSERT INTO {table} ({key_column}, {', '.join(columns)}, source_lsn) VALUES %s "
                        f"ON CONFLICT ({key_column}) DO UPDATE SET {assignments} "
                        f"WHERE {table}.source_lsn < EXCLUDED.source_lsn RETURNING {key_column}, xmax = 0",
                        [(r.key, *(r.values.get(c) for c in columns), r.source_lsn) for r in upserts],
                        fetch=True,
                        page_size=PAGE_SIZE,
                    )
                    if inserted
                ]
            if deletes:
                cur.execute(
                    f"DELETE FROM {table} d USING unnest(%s::int[], %s::bigint[]) AS x(key, lsn) "
                    f"WHERE d.{key_column} = x.key AND d.source_lsn < x.lsn",
                    ([r.key for r in deletes], [r.source_lsn for r in deletes]),
                )
        return changed

    def _write_sessions(self, cur, staged: Staged) -> None:
        if staged.sessions_copy:
            _copy(cur, "COPY staging_sessions FROM STDIN", staged.sessions_copy)
            cur.execute(_UPSERT_SESSIONS)
        if deletes := staged.session_deletes:
            cur.execute(
                "DELETE FROM customer_sessions s USING unnest(%s::varchar[], %s::bigint[]) AS x(id, lsn) "
                "WHERE s.session_id = x.id AND s.source_lsn < x.lsn",
                ([r.session_id for r in deletes], [r.source_lsn for r in deletes]),
            )

    def _write_dead_letters(self, cur, letters: list[DeadLetter]) -> None:
        if letters:
            execute_values(
                cur,
                "INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, message_key, message_value, "
                "value_bytes, value_sha256, reason) VALUES %s "
                "ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING",
                [
                    (
                        d.topic,
                        d.partition,
                        d.offset,
                        excerpt(d.key),
                        excerpt(d.value),
                        d.value_bytes,
                        d.value_sha256,
                        d.reason,
                    )
                    for d in letters
                ],
            )


def _copy(cur, statement: str, data: bytes) -> None:
    # One read, one send: psycopg2 retakes the GIL for every chunk it reads, each time behind the
    # decode thread (a batch is ~17 MB; it was sent in 1 MiB chunks).
    cur.copy_expert(statement, io.BytesIO(data), size=max(len(data), 8192))


def _session_copy_line(row: SessionRow) -> str:
    """A staging_sessions row: what the source row tells of the session (start, end, device)."""
    source_data = {"start_time": _iso(row.started_at), "end_time": _iso(row.ended_at), "device": row.device}
    at = row.ended_at or row.started_at
    return (
        f"{row.session_id.translate(_COPY_ESCAPES)}\t{_COPY_NULL if row.customer_id is None else row.customer_id}\t"
        f"{_copy_json(source_data)}\t{_COPY_NULL if at is None else at.isoformat()}\t{row.source_lsn}\n"
    )


def _latest(rows: Iterable, key) -> list:
    """The newest change (highest LSN) per key: a batch may hold several changes of one row."""
    newest: dict[Any, Any] = {}
    for row in rows:
        current = newest.get(key(row))
        if current is None or row.source_lsn > current.source_lsn:
            newest[key(row)] = row
    return list(newest.values())


_COPY_NULL = "\\N"
_CENT: Decimal = Decimal("0.01")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _staging_line(fields: str, deleted: bool) -> str:
    """A staging_events row in COPY's text format (columns as in _STAGING_COLUMNS): the event's
    fields (from _event_fields) and the `deleted` flag."""
    return f"{fields}{'t' if deleted else 'f'}\n"


def _event_fields(e: EventRow) -> str:
    """The event's fields in COPY's text format, each followed by a tab (see _event_columns).

    One f-string per row: this runs for every event, so no per-field dispatch on type. Integers,
    decimals, timestamps and the mapper's event types need no escaping; text from the source does.
    """
    return (
        f"{e.event_type}\t{_COPY_NULL if e.timestamp is None else e.timestamp.isoformat()}\t"
        f"{_COPY_NULL if e.customer_id is None else e.customer_id}\t"
        f"{_COPY_NULL if e.product_id is None else e.product_id}\t"
        f"{_COPY_NULL if e.amount is None else e.amount}\t"
        f"{_COPY_NULL if e.session_id is None else e.session_id.translate(_COPY_ESCAPES)}\t"
        f"{_COPY_NULL if e.raw_data is None else _copy_json(e.raw_data)}\t"
        f"{e.event_key.translate(_COPY_ESCAPES)}\t{e.source_lsn}\t"
    )


def _created_copy(staged: Staged, customers: dict[int, str], products: dict[int, tuple[str, str]]) -> bytes:
    """The created events' lines completed with their names (escaped once per batch, not per row)."""
    customer_text: dict[int | None, str] = {key: _copy_text(name) for key, name in customers.items()}
    product_text: dict[int | None, str] = {
        key: f"{_copy_text(name)}\t{_copy_text(category)}" for key, (name, category) in products.items()
    }
    no_product = f"{_COPY_NULL}\t{_COPY_NULL}"
    return "".join(
        f"{line}{customer_text.get(e.customer_id, _COPY_NULL)}\t{product_text.get(e.product_id, no_product)}\n"
        for e, line in staged.created
    ).encode()


def _dimension_names(cur, created: list[EventRow]) -> tuple[dict[int, str], dict[int, tuple[str, str]]]:
    """The names of the events' customers and products, read in the write's transaction."""
    customer_ids = {e.customer_id for e in created if e.customer_id is not None}
    product_ids = {e.product_id for e in created if e.product_id is not None}
    customers: dict[int, str] = {}
    products: dict[int, tuple[str, str]] = {}
    if customer_ids:
        cur.execute(_CUSTOMER_NAMES, (int_array(customer_ids),))
        customers = dict(cur.fetchall())
    if product_ids:
        cur.execute(_PRODUCT_NAMES, (int_array(product_ids),))
        products = {key: (name, category) for key, name, category in cur.fetchall()}
    return customers, products


def _item_message(e: EventRow) -> dict[str, Any]:
    """A created transaction item's message (_ITEM_FIELDS, as the upsert builds it), names still unknown."""
    return {name: value(e) for name, _, value in _ITEM_FIELDS}


def _enriched_item(message: dict[str, Any], products: dict[int, tuple[str, str]]) -> EnrichedItem:
    name, category = products.get(message["product_id"], (None, None))
    encoded = msgspec.json.encode({**message, "product_name": name, "category": category})
    return EnrichedItem(message["event_key"], encoded)


def _copy_text(value: str | None) -> str:
    return _COPY_NULL if value is None else value.translate(_COPY_ESCAPES)


def _copy_json(value: dict[str, Any]) -> str:
    """JSON escapes control characters itself; COPY only needs its backslashes doubled."""
    text = msgspec.json.encode(value).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
