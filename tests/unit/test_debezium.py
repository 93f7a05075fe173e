"""Decoding of real Debezium 3.6 messages, captured from our connector (tests/fixtures/debezium)."""

import base64
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from instashop.ingest.debezium import Change, DecodeError, decode

FIXTURES = Path(__file__).parents[1] / "fixtures" / "debezium"
MODES = ("no_schema_string_decimals", "schema_precise_decimals")


def _messages(mode: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{mode}.jsonl").read_text().splitlines()]


def _raw(message: dict) -> tuple[bytes | None, bytes | None]:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    return encode(message["key"]), encode(message["value"])


def _decoded(mode: str, table: str, op: str) -> list[Change]:
    changes = [decode(*_raw(m)) for m in _messages(mode) if m["topic"].endswith(f".{table}")]
    return [c for c in changes if c is not None and c.op == op]


@pytest.mark.parametrize("mode", MODES)
def test_every_captured_message_decodes(mode):
    tombstones = 0
    for message in _messages(mode):
        change = decode(*_raw(message))
        if message["value"] is None:
            assert change is None
            tombstones += 1
            continue
        assert change.table == message["topic"].split(".")[-1]
        assert change.op in {"c", "u", "d", "r"}
        assert change.lsn > 0
        assert change.key and all(k in change.row for k in change.key)
    assert tombstones > 0


@pytest.mark.parametrize("mode", MODES)
def test_snapshot_reads_are_flagged_including_first_and_last(mode):
    reads = [c for m in _messages(mode) if (c := decode(*_raw(m))) is not None and c.op == "r"]
    assert reads and all(c.snapshot for c in reads)
    streamed = [c for m in _messages(mode) if (c := decode(*_raw(m))) is not None and c.op != "r"]
    assert streamed and not any(c.snapshot for c in streamed)


def test_precise_decimals_are_exact_with_the_schema_scale():
    for change in _decoded("schema_precise_decimals", "transactions", "c"):
        amount = change.after["total_amount"]
        assert isinstance(amount, Decimal)
        assert amount.as_tuple().exponent == -2


def test_string_decimals_stay_exact_strings_without_schema():
    for change in _decoded("no_schema_string_decimals", "cart_events", "c"):
        assert isinstance(change.after["amount"], str)
        assert Decimal(change.after["amount"]) == Decimal(change.after["unit_price"]) * change.after["quantity"]


def test_zoned_timestamps_become_naive_utc_with_the_schema():
    for change in _decoded("schema_precise_decimals", "sessions", "c"):
        started = change.after["started_at"]
        assert isinstance(started, datetime) and started.tzinfo is None


def test_delete_carries_only_the_primary_key_and_the_update_both_rows():
    (delete, *_) = _decoded("no_schema_string_decimals", "transactions", "d")
    assert delete.after is None and set(delete.before) >= {"transaction_id"}
    assert delete.row["transaction_id"] == delete.key["transaction_id"]
    (update, *_) = _decoded("no_schema_string_decimals", "transactions", "u")
    assert update.after["status"] in {"paid", "failed", "refunded"}


def test_decimal_encodings_of_the_connect_schema():
    schema = {
        "type": "struct",
        "fields": [
            {
                "field": "price",
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2"},
            },
            {"field": "free", "type": "struct", "name": "io.debezium.data.VariableScaleDecimal"},
            {"field": "at_us", "type": "int64", "name": "io.debezium.time.MicroTimestamp"},
            {"field": "at_ms", "type": "int64", "name": "io.debezium.time.Timestamp"},
            {"field": "day", "type": "int32", "name": "io.debezium.time.Date"},
        ],
    }
    minus = base64.b64encode((-12345).to_bytes(2, "big", signed=True)).decode()
    big = base64.b64encode((10**20 + 1).to_bytes(9, "big", signed=True)).decode()
    row = {
        "price": minus,
        "free": {"scale": 3, "value": big},
        "at_us": 1_700_000_000_123_456,
        "at_ms": 1_700_000_000_123,
        "day": 19_000,
    }
    value = {
        "schema": {"type": "struct", "fields": [{"field": "after", **schema}, {"field": "before", **schema}]},
        "payload": {
            "before": None,
            "after": row,
            "op": "c",
            "source": {"table": "products", "lsn": 7, "ts_ms": 0, "snapshot": "false"},
        },
    }
    change = decode(b'{"product_id": 1}', json.dumps(value).encode())
    assert change.after["price"] == Decimal("-123.45")
    assert change.after["free"] == Decimal("100000000000000000.001")
    assert change.after["at_us"] == datetime(2023, 11, 14, 22, 13, 20, 123456)
    assert change.after["at_ms"] == datetime(2023, 11, 14, 22, 13, 20, 123000)
    assert str(change.after["day"]) == "2022-01-08"


_PRICE = {
    "field": "price",
    "type": "bytes",
    "name": "org.apache.kafka.connect.data.Decimal",
    "parameters": {"scale": "2"},
}
_SCHEMA_FIRST_BAD_DECIMAL = json.dumps(
    {
        "schema": {"type": "struct", "fields": [{"field": "after", "type": "struct", "fields": [_PRICE]}]},
        "payload": {"op": "c", "after": {"price": "***"}, "source": {"table": "products", "lsn": 1, "ts_ms": 0}},
    },
    separators=(",", ":"),
).encode()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b'{"id":1}', b"{not json", "not valid JSON"),
        (b'{"id":1}', b"[1, 2]", "expected an object"),
        (b'{"id":1}', b'{"op": "t", "source": {"table": "x"}}', "unsupported operation"),
        (b'{"id":1}', b'{"op": "c", "after": {"id": 1}}', "no source.table"),
        (
            b'{"id":1}',
            b'{"op": "c", "after": null, "source": {"table": "x", "lsn": 1, "ts_ms": 0}}',
            "without its after",
        ),
        (b'{"id":1}', b'{"op": "c", "after": {}, "source": {"table": "x", "lsn": "1", "ts_ms": 0}}', "source.lsn"),
        (None, b'{"op": "c", "after": {}, "source": {"table": "x", "lsn": 1, "ts_ms": 0}}', "no key"),
        (b"\xff\xfe", b'{"op": "c", "after": {}, "source": {"table": "x", "lsn": 1, "ts_ms": 0}}', "key is not valid"),
        # Embedded schemas, compact and schema first as JsonConverter writes them.
        (b'{"id":1}', b'{"schema":{"fields":[},"payload":{}}', "value is not valid JSON"),
        (b'{"id":1}', b'{"schema":{},"payload":[1]}', "payload is not an object"),
        (b'{"id":1}', _SCHEMA_FIRST_BAD_DECIMAL, r"after\.price: cannot decode '\*\*\*' as org\.apache\.kafka"),
    ],
)
def test_malformed_messages_raise_with_a_reason(key, value, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(key, value)
