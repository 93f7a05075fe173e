"""Mapping of decoded changes to warehouse rows: event types, populated fields, exact amounts."""

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from instashop.ingest.debezium import Change, DecodeError, decode
from instashop.ingest.events import DimensionRow, EventRow, SessionRow, map_change

FIXTURES = Path(__file__).parents[1] / "fixtures" / "debezium"


def _fixture_changes(mode: str) -> list[Change]:
    changes = []
    for line in (FIXTURES / f"{mode}.jsonl").read_text().splitlines():
        message = json.loads(line)
        change = decode(*(None if v is None else v.encode() for v in (message["key"], message["value"])))
        if change is not None:
            changes.append(change)
    return changes


@pytest.mark.parametrize("mode", ["no_schema_string_decimals", "schema_precise_decimals"])
def test_every_captured_change_maps(mode):
    kinds = {}
    for change in _fixture_changes(mode):
        row = map_change(change)
        kinds.setdefault(change.table, type(row))
        if isinstance(row, EventRow) and not row.deleted:
            assert row.event_key.startswith(f"{change.table}:")
            assert isinstance(row.timestamp, datetime) and row.timestamp.tzinfo is None
            assert row.raw_data and row.source_lsn == change.lsn
    assert kinds["transactions"] is EventRow
    assert kinds["sessions"] is SessionRow
    assert kinds["products"] is DimensionRow


def test_both_converter_settings_give_the_same_typed_rows():
    """Precise decimals with schema and string decimals without must map the same row alike.

    The two fixtures were captured one after the other, so only some snapshot rows are in both;
    those are compared whole (all but the WAL position, which differs between the captures)."""

    def typed(mode):
        rows = {}
        for change in _fixture_changes(mode):
            if change.op == "r":
                row = map_change(change)
                row.source_lsn = 0
                rows[(change.table, json.dumps(change.key, sort_keys=True))] = row
        return rows

    plain, with_schema = typed("no_schema_string_decimals"), typed("schema_precise_decimals")
    common = sorted(plain.keys() & with_schema.keys())
    # The rows whose decimals the two converter settings encode differently must be among them.
    assert {"products", "transaction_items"} <= {table for table, _ in common}, common
    assert any(isinstance(plain[k], EventRow) and plain[k].amount is not None for k in common), common
    for key in common:
        assert plain[key] == with_schema[key], key


def _change(table, op, after=None, before=None, key=None):
    return Change(table, op, key or {}, before, after, lsn=42, committed_at=datetime(2026, 1, 1), snapshot=False)


TX = {
    "transaction_id": 7,
    "customer_id": 3,
    "session_id": "sess_1",
    "total_amount": "10.05",
    "payment_method": "card",
    "status": "paid",
    "created_at": "2026-03-01T23:30:00.5+02:00",
    "updated_at": "2026-03-01T21:31:00Z",
}


def test_transaction_maps_to_spec_fields_with_exact_amount_and_utc_time():
    row = map_change(_change("transactions", "u", after=TX))
    # raw_data is the typed row; stored as JSON it keeps exact decimals as strings and times in UTC.
    stored_raw_data = json.loads(msgspec.json.encode(row.raw_data))
    assert stored_raw_data == {**TX, "created_at": "2026-03-01T21:30:00.500000", "updated_at": "2026-03-01T21:31:00"}
    assert row == EventRow(
        event_key="transactions:7",
        source_lsn=42,
        deleted=False,
        event_type="transaction",
        timestamp=datetime(2026, 3, 1, 21, 30, 0, 500000),
        customer_id=3,
        product_id=None,
        amount=Decimal("10.05"),
        session_id="sess_1",
        raw_data={
            **TX,
            "total_amount": Decimal("10.05"),
            "created_at": datetime(2026, 3, 1, 21, 30, 0, 500000),
            "updated_at": datetime(2026, 3, 1, 21, 31),
        },
    )


def test_delete_needs_only_the_primary_key():
    row = map_change(_change("transactions", "d", before={"transaction_id": 7}, key={"transaction_id": 7}))
    assert (row.event_key, row.deleted, row.timestamp) == ("transactions:7", True, None)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("total_amount", 10.05, "exact decimal"),
        ("total_amount", "ten", "decimal string"),
        ("total_amount", "NaN", "exact decimal"),
        ("customer_id", "3", "expected an integer"),
        ("created_at", "yesterday", "ISO-8601"),
        ("created_at", None, "ISO-8601"),
    ],
)
def test_wrong_types_are_rejected_with_the_column_named(column, value, reason):
    with pytest.raises(DecodeError, match=f"transactions.{column}: .*{reason}"):
        map_change(_change("transactions", "c", after={**TX, column: value}))


def test_missing_column_and_unknown_table_are_rejected():
    with pytest.raises(DecodeError, match=r"transactions\.status is missing"):
        map_change(_change("transactions", "c", after={k: v for k, v in TX.items() if k != "status"}))
    with pytest.raises(DecodeError, match="unknown table 'refunds'"):
        map_change(_change("refunds", "c", after={"id": 1}))
