"""The consumer's fast path: the change events our connector writes, decoded straight into rows.

The general path (`debezium.decode`, then `events.map_change`) parses any Debezium JSON envelope
into dicts, converts logical types by the embedded schema, then checks and types every column: it
takes every encoding and names what is wrong with a bad message. Nearly every message has one of a
few shapes, so this module decodes those in one msgspec pass into a struct of the table's columns
(typed as JSON has them, no intermediate dicts) and hands the row to the same `events.map_row`.

It takes creates, updates and snapshot reads of the shop's tables whose values have the JSON types
of our connector's settings: decimals as strings (decimal.handling.mode=string) or, with an
embedded schema, whatever the schema's logical types say (converted by the general path's own
converters); times as ISO-8601 strings. For anything else, deletes and every malformed message
included, `map_message` returns None and `decode.decode_message` takes the general path, so rows and
dead-letter reasons are the general path's (tests/unit/test_typed_changes.py: equal rows).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from instashop.ingest import debezium, events

_OPS = ("c", "u", "r")  # a delete's `before` may hold only the key: the general path maps it


class _Source(msgspec.Struct):
    table: str
    lsn: int
    ts_ms: int  # unused here, but the general path rejects a message without it


class _Decoders(msgspec.Struct):
    """Per table: values and keys without a schema, and with one (`{"schema": …, "payload": …}`)."""

    table: str
    plain: msgspec.json.Decoder
    with_schema: msgspec.json.Decoder
    key_plain: msgspec.json.Decoder
    key_with_schema: msgspec.json.Decoder
    parsed_columns: list[tuple[str, Any]]  # (column, parser) of the columns JSON leaves as strings
    # The last embedded value schema and its converters: every message of a table carries the same
    # one, and comparing it costs a fraction of hashing it for a cache lookup. One tuple, one store.
    schema_converters: tuple[msgspec.Raw, debezium.Converters] | None = None


def map_message(topic: str, key: bytes | None, value: bytes | None) -> events.Mapped | None:
    """The warehouse row of a message of `<prefix>.public.<table>`, or None: take the general path."""
    decoders = _decoders(topic.rpartition(".")[2])
    if decoders is None or value is None or key is None:
        return None
    try:
        if value.startswith(debezium.SCHEMA_FIRST):
            message = decoders.with_schema.decode(value)
            change, converters = message.payload, _converters(decoders, message.schema)
        else:
            change, converters = decoders.plain.decode(value), {}
        if change.op not in _OPS or change.source.table != decoders.table:
            return None
        # A key of the primary key's column and type passes the general path's checks.
        (decoders.key_with_schema if key.startswith(debezium.SCHEMA_FIRST) else decoders.key_plain).decode(key)
        row = debezium.convert_row(msgspec.structs.asdict(change.after), converters, "after")
        if row is None:
            return None
        for column, parse in decoders.parsed_columns:
            row[column] = parse(row[column])
    except (msgspec.ValidationError, msgspec.DecodeError, debezium.DecodeError, TypeError):
        return None
    return events.map_row(change.source.table, False, change.source.lsn, row, created=change.op == "c")


def _converters(decoders: _Decoders, schema: msgspec.Raw) -> debezium.Converters:
    cached = decoders.schema_converters
    if cached is None or cached[0] != schema:
        cached = decoders.schema_converters = (schema, debezium.row_converters(bytes(schema), "after"))
    return cached[1]


@functools.cache
def _decoders(table: str) -> _Decoders | None:
    if table not in events.SOURCE_TABLES:
        return None
    spec = events.SOURCE_TABLES[table]
    row = msgspec.defstruct(
        f"{table}_row", [(column, events.json_type(parse)) for column, parse in spec.columns.items()]
    )
    change = msgspec.defstruct(
        f"{table}_change", [("op", str), ("source", _Source), ("after", row), ("before", None, None)]
    )
    key = msgspec.defstruct(f"{table}_key", [(spec.primary_key, events.json_type(spec.columns[spec.primary_key]))])
    parsed = [(column, parse) for column, parse in spec.columns.items() if events.needs_parsing(parse)]
    return _Decoders(
        table,
        plain=msgspec.json.Decoder(change),
        with_schema=msgspec.json.Decoder(_with_schema(f"{table}_message", change)),
        key_plain=msgspec.json.Decoder(key),
        key_with_schema=msgspec.json.Decoder(_with_schema(f"{table}_key_message", key)),
        parsed_columns=parsed,
    )


def _with_schema(name: str, payload: type) -> type:
    """JsonConverter's envelope with schemas.enable=true; the schema is kept raw (parsed once per table)."""
    return msgspec.defstruct(name, [("schema", msgspec.Raw), ("payload", payload)], forbid_unknown_fields=True)
