"""Decode Debezium change events (PostgreSQL connector, JsonConverter) into `Change` records.

Handles the envelope with and without embedded schemas. With a schema, logical types are turned
into Python values exactly: `Decimal` from Connect decimals (base64 two's-complement bytes whose
scale is in the schema), from Debezium's variable-scale struct and from `decimal.handling.mode=
string`; datetimes from Debezium's Date, Timestamp (ms), MicroTimestamp (µs), NanoTimestamp and
ZonedTimestamp. Without a schema values stay as JSON gave them; the event mapper parses them by
column type. Anything malformed raises `DecodeError` with a reason for the dead-letter queue.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

OPS = {"c", "u", "d", "r"}  # create, update, delete, snapshot read
_EPOCH = datetime(1970, 1, 1)
_json = msgspec.json.Decoder()
# Top-level members left undecoded: an embedded schema is parsed once per distinct schema, not per message.
_members = msgspec.json.Decoder(dict[str, msgspec.Raw])
# JsonConverter with schemas.enable=true writes the schema first: {"schema":...,"payload":...}.
SCHEMA_FIRST = b'{"schema":'

# Field name -> (converter, the field's Connect schema), for the fields of a logical type only.
Converters = dict[str, tuple[Callable[[Any, dict[str, Any]], Any], dict[str, Any]]]


class Schema(NamedTuple):
    """An embedded Connect schema, prepared for decoding: converters of its fields and of its structs'."""

    fields: Converters
    structs: dict[str, Converters]  # e.g. "before"/"after" -> the row's column converters


_NO_SCHEMA = Schema({}, {})


class DecodeError(ValueError):
    """The message is not a change event we can apply; str(err) is the reason."""


@dataclass(frozen=True)
class Change:
    """One row change as captured from the WAL."""

    table: str
    op: str
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    lsn: int
    committed_at: datetime  # source.ts_ms: commit time in the database (UTC, naive)
    snapshot: bool

    @property
    def row(self) -> dict[str, Any]:
        """The row as it is after the change (before it, for a delete)."""
        row = self.before if self.op == "d" else self.after
        return row if row is not None else self.key


def decode(key: bytes | None, value: bytes | None) -> Change | None:
    """Decode one Kafka message; None for a tombstone (the null value that follows a delete)."""
    if value is None:
        return None
    envelope, schema = _parse_message(value, "value")
    op = envelope.get("op")
    if op not in OPS:
        raise DecodeError(f"unsupported operation {op!r} (expected one of c, u, d, r)")
    source = envelope.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("table"), str):
        raise DecodeError("envelope has no source.table")
    before = convert_row(envelope.get("before"), schema.structs.get("before", {}), "before")
    after = convert_row(envelope.get("after"), schema.structs.get("after", {}), "after")
    if (op == "d" and before is None) or (op != "d" and after is None):
        raise DecodeError(f"op {op!r} without its {'before' if op == 'd' else 'after'} row")
    return Change(
        table=source["table"],
        op=op,
        key=decode_key(key),
        before=before,
        after=after,
        lsn=_int(source.get("lsn"), "source.lsn"),
        committed_at=_EPOCH + timedelta(milliseconds=_int(source.get("ts_ms"), "source.ts_ms")),
        # A string enum (true, first, last, first_in_data_collection, incremental…); absent when streaming.
        snapshot=source.get("snapshot") not in (None, False, "false"),
    )


def decode_key(key: bytes | None) -> dict[str, Any]:
    """A message key (the row's primary key), checked and converted like `decode` does."""
    if key is None:
        raise DecodeError("message has no key (Debezium keys every row change by its primary key)")
    payload, schema = _parse_message(key, "key")
    converted = convert_row(payload, schema.fields, "key")
    if not converted:
        raise DecodeError("key is empty")
    return converted


def _parse_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = _json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise DecodeError(f"{what} is not valid JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise DecodeError(f"{what} is JSON {type(parsed).__name__}, expected an object")
    return parsed


def _parse_message(raw: bytes, what: str) -> tuple[dict[str, Any], Schema]:
    """The payload and its prepared schema (empty without an embedded schema)."""
    if raw.startswith(SCHEMA_FIRST):
        try:
            members = _members.decode(raw)
            if members.keys() == {"schema", "payload"}:
                return _payload(_json.decode(members["payload"])), _prepared(bytes(members["schema"]))
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            raise DecodeError(f"{what} is not valid JSON: {err}") from None
    message = _parse_json(raw, what)
    if message.keys() == {"schema", "payload"}:  # schemas.enable=true, members in another order
        return _payload(message["payload"]), _prepare(message["schema"])
    return message, _NO_SCHEMA


def _payload(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DecodeError("payload is not an object")
    return payload


def row_converters(raw_schema: bytes, struct: str) -> Converters:
    """The converters of the fields of a logical type of `struct` ("after") in an embedded schema."""
    return _prepared(raw_schema).structs.get(struct, {})


@functools.lru_cache(maxsize=1024)
def _prepared(raw_schema: bytes) -> Schema:
    """Every message of a table carries the same schema: parse and prepare it once."""
    return _prepare(_json.decode(raw_schema))


def _prepare(schema: Any) -> Schema:
    fields = _struct_fields(schema)
    structs = {name: _converters(_struct_fields(f)) for name, f in fields.items() if f.get("type") == "struct"}
    return Schema(_converters(fields), structs)


def _struct_fields(schema: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(schema, dict):
        return {}
    return {f["field"]: f for f in schema.get("fields", []) if isinstance(f, dict) and "field" in f}


def _converters(fields: dict[str, dict[str, Any]]) -> Converters:
    """Only fields of a logical type need converting; the rest stay as JSON gave them."""
    return {name: (_LOGICAL_TYPES[f["name"]], f) for name, f in fields.items() if f.get("name") in _LOGICAL_TYPES}


def convert_row(row: Any, converters: Converters, what: str) -> dict[str, Any] | None:
    if row is None:
        return None
    if not isinstance(row, dict):
        raise DecodeError(f"{what} is not an object")
    converted = dict(row)
    for name, (convert, schema) in converters.items():
        value = converted.get(name)
        if value is None:
            continue
        try:
            converted[name] = convert(value, schema)
        except (ValueError, TypeError, ArithmeticError, KeyError) as err:
            raise DecodeError(f"{what}.{name}: cannot decode {value!r} as {schema['name']}: {err}") from None
    return converted


def _connect_decimal(value: Any, schema: dict[str, Any]) -> Decimal:
    if isinstance(value, str) and schema.get("type") == "string":
        return Decimal(value)  # decimal.handling.mode=string
    scale = int(schema["parameters"]["scale"])
    unscaled = int.from_bytes(base64.b64decode(value, validate=True), "big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


def _variable_scale_decimal(value: Any, _schema: dict[str, Any]) -> Decimal:
    unscaled = int.from_bytes(base64.b64decode(value["value"], validate=True), "big", signed=True)
    return Decimal(unscaled).scaleb(-int(value["scale"]))


def _zoned_timestamp(value: Any, _schema: dict[str, Any]) -> datetime:
    """ISO-8601 with offset (TIMESTAMPTZ) -> naive UTC, as the DWH stores it."""
    return naive_utc(value)


def naive_utc(text: str) -> datetime:
    """An ISO-8601 time -> naive UTC; without an offset it is taken as UTC already. ValueError if bad."""
    if text.endswith("Z"):  # how Debezium writes every zoned time: the naive UTC time is before the Z
        parsed = datetime.fromisoformat(text[:-1])
        if parsed.tzinfo is None:
            return parsed
        raise ValueError(f"two offsets in {text!r}")
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


_LOGICAL_TYPES = {
    "org.apache.kafka.connect.data.Decimal": _connect_decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_scale_decimal,
    "io.debezium.time.Date": lambda v, _: date(1970, 1, 1) + timedelta(days=int(v)),
    "org.apache.kafka.connect.data.Date": lambda v, _: date(1970, 1, 1) + timedelta(days=int(v)),
    "io.debezium.time.Timestamp": lambda v, _: _EPOCH + timedelta(milliseconds=int(v)),
    "org.apache.kafka.connect.data.Timestamp": lambda v, _: _EPOCH + timedelta(milliseconds=int(v)),
    "io.debezium.time.MicroTimestamp": lambda v, _: _EPOCH + timedelta(microseconds=int(v)),
    "io.debezium.time.NanoTimestamp": lambda v, _: _EPOCH + timedelta(microseconds=int(v) // 1000),
    "io.debezium.time.ZonedTimestamp": _zoned_timestamp,
}


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{where} is {value!r}, expected an integer")
    return value
