"""Map decoded changes of the shop's tables to warehouse rows (spec: "Tipos de Eventos Procesados").

| OLTP table        | warehouse                                   |
| ----------------- | ------------------------------------------- |
| transactions      | realtime_events `transaction`               |
| transaction_items | realtime_events `transaction_item`          |
| page_views        | realtime_events `user_behavior`             |
| searches          | realtime_events `search`                    |
| cart_events       | realtime_events `cart_event`                |
| sessions          | customer_sessions                           |
| customers         | dim_customers (enriches customer_name)      |
| products          | dim_products (enriches product_name, category) |

Each source row is one warehouse row identified by `event_key` = '<table>:<primary key>': an
update rewrites it (a transaction's status change never adds a second amount) and a delete
removes it, so the spec's queries always agree with the shop's current data. Values are parsed by
column type; a value of the wrong type raises DecodeError (the message goes to the DLQ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from instashop.ingest.debezium import Change, DecodeError, naive_utc

# The rows below are made for every message: slots, not frozen (a frozen dataclass's __init__ costs
# ~1 us more per row, ~5 % of the consumer's decoding). Nothing changes them once made.


@dataclass(slots=True)
class EventRow:
    """A realtime_events row (or, with deleted=True, the key of one to delete)."""

    event_key: str
    source_lsn: int
    deleted: bool
    event_type: str
    timestamp: datetime | None
    customer_id: int | None = None
    product_id: int | None = None
    amount: Decimal | None = None
    session_id: str | None = None
    raw_data: dict[str, Any] | None = None
    # Inserted at the source (op "c"): the DWH has no row for it unless the change is redelivered.
    created: bool = False


@dataclass(slots=True)
class DimensionRow:
    """A dim_customers or dim_products row, keyed by its source primary key."""

    table: str  # "customers" or "products"
    key: int
    source_lsn: int
    deleted: bool
    values: dict[str, Any]


@dataclass(slots=True)
class SessionRow:
    session_id: str
    source_lsn: int
    deleted: bool
    customer_id: int | None = None
    device: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


Mapped = EventRow | DimensionRow | SessionRow


# --- typed column parsers (accept both the schema-decoded and the bare JSON form) -------------


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _money(value: Any) -> Decimal:
    """numeric(12,2): exact, never through float."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise TypeError(f"expected a decimal string, got {value!r}") from None
        if amount.is_finite():
            return amount
    raise TypeError(f"expected an exact decimal (string), got {value!r}")


def _timestamp(value: Any) -> datetime:
    """timestamptz arrives as ISO-8601 (ZonedTimestamp); the DWH keeps naive UTC."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return naive_utc(value)
        except ValueError:
            raise TypeError(f"expected an ISO-8601 timestamp, got {value!r}") from None
    raise TypeError(f"expected an ISO-8601 timestamp, got {value!r}")


@dataclass(frozen=True)
class _Optional:
    """A nullable column: None, or what `parse` accepts."""

    parse: Callable[[Any], Any]

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.parse(value)


# What each parser takes as our connector writes it (decimals and times as strings): the column
# types of instashop.typed_changes' structs. Text and integers need no parsing once so typed.
_JSON_TYPES: dict[Callable[[Any], Any], type] = {_int: int, _text: str, _money: str, _timestamp: str}


def json_type(parse: Callable[[Any], Any]) -> Any:
    """The JSON type a column parser takes (None allowed for a nullable column)."""
    if isinstance(parse, _Optional):
        return _JSON_TYPES[parse.parse] | None
    return _JSON_TYPES[parse]


def needs_parsing(parse: Callable[[Any], Any]) -> bool:
    """False for a column whose JSON value (as `json_type` says) is already the typed value."""
    return (parse.parse if isinstance(parse, _Optional) else parse) not in (_int, _text)


@dataclass(frozen=True)
class SourceTable:
    primary_key: str
    columns: dict[str, Callable[[Any], Any]]


SOURCE_TABLES: dict[str, SourceTable] = {
    "customers": SourceTable(
        "customer_id",
        {"customer_id": _int, "name": _text, "email": _text, "country": _text, "created_at": _timestamp},
    ),
    "products": SourceTable(
        "product_id",
        {
            "product_id": _int,
            "name": _text,
            "category": _text,
            "price": _money,
            "created_at": _timestamp,
            "updated_at": _timestamp,
        },
    ),
    "sessions": SourceTable(
        "session_id",
        {
            "session_id": _text,
            "customer_id": _int,
            "device": _text,
            "started_at": _timestamp,
            "ended_at": _Optional(_timestamp),
        },
    ),
    "page_views": SourceTable(
        "page_view_id",
        {
            "page_view_id": _int,
            "session_id": _text,
            "customer_id": _int,
            "page_type": _text,
            "product_id": _Optional(_int),
            "viewed_at": _timestamp,
        },
    ),
    "searches": SourceTable(
        "search_id",
        {
            "search_id": _int,
            "session_id": _text,
            "customer_id": _int,
            "query": _text,
            "results_count": _int,
            "searched_at": _timestamp,
        },
    ),
    "cart_events": SourceTable(
        "cart_event_id",
        {
            "cart_event_id": _int,
            "session_id": _text,
            "customer_id": _int,
            "product_id": _int,
            "action": _text,
            "quantity": _int,
            "unit_price": _money,
            "amount": _money,
            "created_at": _timestamp,
        },
    ),
    "transactions": SourceTable(
        "transaction_id",
        {
            "transaction_id": _int,
            "customer_id": _int,
            "session_id": _Optional(_text),
            "total_amount": _money,
            "payment_method": _text,
            "status": _text,
            "created_at": _timestamp,
            "updated_at": _timestamp,
        },
    ),
    "transaction_items": SourceTable(
        "transaction_item_id",
        {
            "transaction_item_id": _int,
            "transaction_id": _int,
            "product_id": _int,
            "quantity": _int,
            "unit_price": _money,
            "amount": _money,
            "created_at": _timestamp,
        },
    ),
}


def parse_row(table: str, row: dict[str, Any], complete: bool) -> dict[str, Any]:
    """Typed copy of a source row; complete=False accepts a key-only row (a delete's `before`)."""
    spec = SOURCE_TABLES.get(table)
    if spec is None:
        raise DecodeError(f"unknown table {table!r}")
    parsed = {}
    for column, parse in spec.columns.items():
        if column not in row:
            if complete or column == spec.primary_key:
                raise DecodeError(f"{table}.{column} is missing")
            continue
        try:
            parsed[column] = parse(row[column])
        except TypeError as err:
            raise DecodeError(f"{table}.{column}: {err}") from None
    return parsed


# --- change -> warehouse rows ------------------------------------------------------------------

# table -> (event_type, timestamp column, amount column)
_EVENT_TABLES = {
    "transactions": ("transaction", "created_at", "total_amount"),
    "transaction_items": ("transaction_item", "created_at", "amount"),
    "page_views": ("user_behavior", "viewed_at", None),
    "searches": ("search", "searched_at", None),
    "cart_events": ("cart_event", "created_at", "amount"),
}


def map_change(change: Change) -> Mapped:
    deleted = change.op == "d"
    row = parse_row(change.table, change.row, complete=not deleted)
    return map_row(change.table, deleted, change.lsn, row, created=change.op == "c")


def map_row(table: str, deleted: bool, lsn: int, row: dict[str, Any], created: bool = False) -> Mapped:
    """A typed source row (`parse_row`'s result) of a change at `lsn` -> its warehouse row.

    created: the change inserted the row at the source (Debezium's op "c").
    """
    spec = SOURCE_TABLES[table]
    key = row[spec.primary_key]
    if table in _EVENT_TABLES:
        return _event_row(table, lsn, row, key, deleted, created)
    if table == "sessions":
        return SessionRow(
            session_id=key,
            source_lsn=lsn,
            deleted=deleted,
            customer_id=row.get("customer_id"),
            device=row.get("device"),
            started_at=row.get("started_at"),
            ended_at=row.get("ended_at"),
        )
    values = {c: v for c, v in row.items() if c != spec.primary_key}
    return DimensionRow(table, key, lsn, deleted, values)


def _event_row(table: str, lsn: int, row: dict[str, Any], key: Any, deleted: bool, created: bool) -> EventRow:
    event_type, time_column, amount_column = _EVENT_TABLES[table]
    event_key = f"{table}:{key}"
    if deleted:
        return EventRow(event_key, lsn, True, event_type, row.get(time_column))
    return EventRow(
        event_key=event_key,
        source_lsn=lsn,
        deleted=False,
        event_type=event_type,
        timestamp=row[time_column],
        customer_id=row.get("customer_id"),
        product_id=row.get("product_id"),
        amount=row[amount_column] if amount_column else None,
        session_id=row.get("session_id"),
        raw_data=row,
        created=created,
    )
