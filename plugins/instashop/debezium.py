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
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

OPS = {"c", "u", "d", "r"}  # create, update, delete, snapshot read
_EPOCH = datetime(1970, 1, 1)
_json = msgspec.json.Decoder()


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
    envelope, schema = _unwrap(_parse_json(value, "value"))
    op = envelope.get("op")
    if op not in OPS:
        raise DecodeError(f"unsupported operation {op!r} (expected one of c, u, d, r)")
    source = envelope.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("table"), str):
        raise DecodeError("envelope has no source.table")
    fields = _field_schemas(schema)
    before = _convert_row(envelope.get("before"), fields.get("before"), "before")
    after = _convert_row(envelope.get("after"), fields.get("after"), "after")
    if (op == "d" and before is None) or (op != "d" and after is None):
        raise DecodeError(f"op {op!r} without its {'before' if op == 'd' else 'after'} row")
    return Change(
        table=source["table"],
        op=op,
        key=_decode_key(key),
        before=before,
        after=after,
        lsn=_int(source.get("lsn"), "source.lsn"),
        committed_at=_EPOCH + timedelta(milliseconds=_int(source.get("ts_ms"), "source.ts_ms")),
        # A string enum (true, first, last, first_in_data_collection, incremental…); absent when streaming.
        snapshot=source.get("snapshot") not in (None, False, "false"),
    )


def _decode_key(key: bytes | None) -> dict[str, Any]:
    if key is None:
        raise DecodeError("message has no key (Debezium keys every row change by its primary key)")
    payload, schema = _unwrap(_parse_json(key, "key"))
    converted = _convert_row(payload, schema, "key")
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


def _unwrap(message: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Split `{"schema": …, "payload": …}` (schemas.enable=true) from a bare payload."""
    if set(message) == {"schema", "payload"}:
        if not isinstance(message["payload"], dict):
            raise DecodeError("payload is not an object")
        return message["payload"], message["schema"]
    return message, None


def _field_schemas(schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not schema:
        return {}
    return {f["field"]: f for f in schema.get("fields", []) if isinstance(f, dict) and "field" in f}


def _convert_row(row: Any, schema: dict[str, Any] | None, what: str) -> dict[str, Any] | None:
    if row is None:
        return None
    if not isinstance(row, dict):
        raise DecodeError(f"{what} is not an object")
    if not schema:
        return dict(row)
    fields = _field_schemas(schema)
    return {name: _convert_value(value, fields.get(name), f"{what}.{name}") for name, value in row.items()}


def _convert_value(value: Any, schema: dict[str, Any] | None, where: str) -> Any:
    if value is None or not schema:
        return value
    name = schema.get("name")
    try:
        converter = _LOGICAL_TYPES.get(name)
        return converter(value, schema) if converter else value
    except (ValueError, TypeError, ArithmeticError) as err:
        raise DecodeError(f"{where}: cannot decode {value!r} as {name}: {err}") from None


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
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
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
