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
included, `map_message` returns None and the caller takes the general path, so rows and
dead-letter reasons are the general path's (tests/unit/test_typed_changes.py: equal rows).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from instashop import debezium, events

_OPS = ("c", "u", "r")  # a delete's `before` may hold only the key: the general path maps it


class _Source(msgspec.Struct):
    table: str
    lsn: int
    ts_ms: int  # unused here, but the general path rejects a message without it


class _Decoders(msgspec.Struct):
    """Per table: messages without a schema, and with one (`{"schema": …, "payload": …}`)."""

    table: str
    plain: msgspec.json.Decoder
    with_schema: msgspec.json.Decoder
    parsed_columns: list[tuple[str, Any]]  # (column, parser) of the columns JSON leaves as strings


def map_message(topic: str, key: bytes | None, value: bytes | None) -> events.Mapped | None:
    """The warehouse row of a message of `<prefix>.public.<table>`, or None: take the general path."""
    decoders = _decoders(topic.rpartition(".")[2])
    if decoders is None or value is None or key is None:
        return None
    try:
        if value.startswith(debezium.SCHEMA_FIRST):
            message = decoders.with_schema.decode(value)
            change, converters = message.payload, debezium.row_converters(bytes(message.schema), "after")
        else:
            change, converters = decoders.plain.decode(value), {}
        if change.op not in _OPS or change.source.table != decoders.table:
            return None
        debezium.decode_key(key)  # what the general path checks of the key
        row = debezium.convert_row(msgspec.structs.asdict(change.after), converters, "after")
        for column, parse in decoders.parsed_columns:
            row[column] = parse(row[column])
    except (msgspec.ValidationError, msgspec.DecodeError, debezium.DecodeError, TypeError):
        return None
    return events.map_row(change.source.table, False, change.source.lsn, row)


@functools.cache
def _decoders(table: str) -> _Decoders | None:
    if table not in events.SOURCE_TABLES:
        return None
    columns = events.SOURCE_TABLES[table].columns
    row = msgspec.defstruct(f"{table}_row", [(column, events.json_type(parse)) for column, parse in columns.items()])
    change = msgspec.defstruct(
        f"{table}_change", [("op", str), ("source", _Source), ("after", row), ("before", None, None)]
    )
    message = msgspec.defstruct(
        f"{table}_message", [("schema", msgspec.Raw), ("payload", change)], forbid_unknown_fields=True
    )
    parsed = [(column, parse) for column, parse in columns.items() if events.needs_parsing(parse)]
    return _Decoders(table, msgspec.json.Decoder(change), msgspec.json.Decoder(message), parsed)
