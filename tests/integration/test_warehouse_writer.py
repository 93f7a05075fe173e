"""The consumer's DWH writer on the real PostgreSQL: what a batch writes, byte for byte, and only once.

On a scratch database migrated like `dwh` (`dwh_writer_test`, dropped afterwards), batches built by
the event mapper are written with `WarehouseWriter`: text from the shop with COPY's special
characters round-trips unchanged, names are enriched from the dimensions, the enriched-item
messages carry the written values, a redelivered batch writes nothing and a newer change wins,
inserts found already written take the merge path, and both paths publish the same item message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg2
import pytest

from instashop.ingest.debezium import Change
from instashop.ingest.events import map_change
from instashop.ingest.warehouse_writer import Batch, WarehouseWriter
from instashop.warehouse.pg_arrays import int_array, text_array
from tests.support.pipeline import scratch_warehouse

pytestmark = pytest.mark.integration

SCRATCH_DB = "dwh_writer_test"
AT = datetime(2026, 3, 1, 12, 0, 0, 250000)
# Everything COPY's text format must escape, plus quotes, non-ASCII and a JSON escape sequence.
AWKWARD = 'tab\there, new\nline, cr\r, back\\slash \\N "quoted" ñandú ✓ \\u0041'


@pytest.fixture
def writer(settings) -> Iterator[WarehouseWriter]:
    with scratch_warehouse(settings, SCRATCH_DB, AT.date(), AT.date() + timedelta(days=1)) as conn:
        yield WarehouseWriter(conn)


def _batch(*changes: tuple[str, str, dict, int]) -> Batch:
    batch = Batch()
    for table, op, row, lsn in changes:
        change = Change(table, op, {}, row if op == "d" else None, None if op == "d" else row, lsn, AT, False)
        mapped = map_change(change)
        {"products": batch.dimensions, "sessions": batch.sessions}.get(table, batch.events).append(mapped)
    return batch


SEARCH = {
    "search_id": 1,
    "session_id": AWKWARD,
    "customer_id": 5,
    "query": AWKWARD,
    "results_count": 3,
    "searched_at": "2026-03-01T12:00:00.25Z",
}
PRODUCT = {
    "product_id": 9,
    "name": "Mug\t“Deluxe”",
    "category": "Home\\Kitchen",
    "price": "12.50",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}
ITEM = {
    "transaction_item_id": 4,
    "transaction_id": 2,
    "product_id": 9,
    "quantity": 3,
    "unit_price": "12.50",
    "amount": "37.50",
    "created_at": "2026-03-01T12:00:00.25Z",
}


def _rows(writer: WarehouseWriter) -> list[tuple]:
    with writer.conn, writer.conn.cursor() as cur:
        cur.execute(
            'SELECT event_key, event_type, "timestamp", session_id, product_name, category, amount, raw_data, '
            "source_lsn FROM realtime_events ORDER BY event_key"
        )
        return cur.fetchall()


def test_awkward_text_round_trips_and_items_carry_the_written_values(writer):
    batch = _batch(("products", "r", PRODUCT, 10), ("searches", "c", SEARCH, 11), ("transaction_items", "c", ITEM, 12))
    result = writer.write(batch)

    assert (result.events_upserted, result.events_deleted) == (2, 0)
    search_row, item_row = _rows(writer)
    assert search_row[:4] == ("searches:1", "search", AT, AWKWARD)
    assert search_row[7] == {**SEARCH, "searched_at": AT.isoformat()}
    assert (item_row[4], item_row[5], str(item_row[6])) == (PRODUCT["name"], PRODUCT["category"], "37.50")

    [item] = result.items
    message = json.loads(item.message)
    assert item.event_key == "transaction_items:4"
    assert message == {
        "event_key": "transaction_items:4",
        "source_lsn": 12,
        "event_time": message["event_time"],
        "transaction_id": 2,
        "product_id": 9,
        "product_name": PRODUCT["name"],
        "category": PRODUCT["category"],
        "quantity": 3,
        "unit_price": "12.50",
        "amount": "37.50",
    }
    assert datetime.fromisoformat(message["event_time"]) == AT


def test_redelivered_batch_writes_nothing_and_a_newer_change_wins(writer):
    first = _batch(("products", "r", PRODUCT, 10), ("transaction_items", "c", ITEM, 12))
    writer.write(first)
    before = _rows(writer)

    again = writer.write(_batch(("products", "r", PRODUCT, 10), ("transaction_items", "c", ITEM, 12)))
    assert (again.events_upserted, again.items) == (0, [])
    assert _rows(writer) == before

    # In one batch, an older change of the same row after a newer one: the newer (higher LSN) wins.
    newer = {**ITEM, "quantity": 4, "amount": "50.00"}
    result = writer.write(_batch(("transaction_items", "u", newer, 20), ("transaction_items", "u", ITEM, 15)))
    assert result.events_upserted == 1
    [row] = _rows(writer)
    assert (str(row[6]), row[7]["quantity"], row[8]) == ("50.00", 4, 20)

    deleted = writer.write(_batch(("transaction_items", "d", {"transaction_item_id": 4}, 21)))
    assert deleted.events_deleted == 1 and _rows(writer) == []


def test_created_events_already_in_the_dwh_are_merged_instead(writer):
    """A redelivered insert among new ones: the COPY is rolled back, the merge writes only what is new."""
    writer.write(_batch(("products", "r", PRODUCT, 10), ("transaction_items", "c", ITEM, 12)))
    before = _rows(writer)

    result = writer.write(_batch(("transaction_items", "c", ITEM, 12), ("searches", "c", SEARCH, 40)))

    assert (result.events_upserted, result.items) == (1, [])
    after = _rows(writer)
    assert [row[0] for row in after] == ["searches:1", "transaction_items:4"]
    assert after[1] == before[0]
    assert after[0][:4] == ("searches:1", "search", AT, AWKWARD)


def test_both_write_paths_publish_the_same_item_message(writer):
    """The COPY path builds an item's message in Python, the merge path in SQL: Spark reads either."""
    writer.write(_batch(("products", "r", PRODUCT, 10)))
    [copied] = writer.write(_batch(("transaction_items", "c", ITEM, 12))).items
    writer.write(_batch(("transaction_items", "d", {"transaction_item_id": 4}, 13)))
    [merged] = writer.write(_batch(("transaction_items", "r", ITEM, 14))).items  # a snapshot read

    def parsed(message: bytes) -> dict:
        fields = json.loads(message)
        return {**fields, "event_time": datetime.fromisoformat(fields["event_time"]), "source_lsn": None}

    assert copied.event_key == merged.event_key == "transaction_items:4"
    assert parsed(copied.message) == parsed(merged.message)
    assert json.loads(copied.message)["product_name"] == PRODUCT["name"]


def test_array_literals_round_trip(writer):
    texts = [AWKWARD, "NULL", "", 'say "hi"', "back\\slash\\", "{a,b}", "ñandú"]
    with writer.conn, writer.conn.cursor() as cur:
        cur.execute("SELECT %s::varchar[], %s::integer[]", (text_array(texts), int_array([3, -1, 2_000_000_000])))
        assert cur.fetchone() == (texts, [3, -1, 2_000_000_000])


SESSION = {
    "session_id": "sess_q",
    "customer_id": 5,
    "device": "mobile",
    "started_at": "2026-03-01T11:59:00Z",
    "ended_at": "2026-03-01T12:01:00Z",
}
PAGE_VIEW = {
    "page_view_id": 1,
    "session_id": "sess_q",
    "customer_id": 5,
    "page_type": "product",
    "product_id": 9,
    "viewed_at": "2026-03-01T12:00:00Z",
}


def _session(writer: WarehouseWriter) -> tuple:
    with writer.conn, writer.conn.cursor() as cur:
        cur.execute("SELECT outcome, session_data->'page_views' FROM customer_sessions WHERE session_id = 'sess_q'")
        outcome = cur.fetchone()
        cur.execute("SELECT array_agg(session_id) FROM session_refresh_queue")
        return (*outcome, cur.fetchone()[0])


def test_deferred_sessions_are_queued_durably_and_recomputed_by_the_next_write(writer):
    writer.write(_batch(("sessions", "c", SESSION, 30), ("page_views", "c", PAGE_VIEW, 31)), defer_sessions=True)
    assert _session(writer) == (None, None, ["sess_q"])  # written, not yet recomputed: queued

    # The queue is a table: a new connection (a restarted consumer) picks it up.
    restarted = WarehouseWriter(psycopg2.connect(writer.conn.dsn, password=writer.conn.info.password))
    try:
        result = restarted.write(Batch())
    finally:
        restarted.conn.close()
    assert result.sessions_changed == 1
    assert _session(writer) == ("bounce", 1, None)
