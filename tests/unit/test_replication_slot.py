"""What the stream supervisor says of Debezium's replication slot, from what pg_replication_slots shows."""

from instashop.ops.replication_slot import SlotState, assess_slot, connector_slot
from instashop.ops.supervisor import DEGRADED, DOWN, HEALTHY

MB = 1024**2


def _state(active=True, wal_status="reserved", retained=4 * MB) -> SlotState:
    return SlotState(active, wal_status, retained, retained // 2, None)


def test_the_slot_checked_is_the_one_the_connector_streams_from():
    assert connector_slot() == "instashop_debezium"


def test_an_active_slot_keeping_little_wal_is_healthy():
    assert assess_slot("s", _state()) == (HEALTHY, "")


def test_a_missing_slot_is_down_and_says_what_to_run():
    status, reason = assess_slot("instashop_debezium", None)
    assert status == DOWN
    assert "instashop_debezium does not exist" in reason
    assert "`instashop connector restart`" in reason and "dwh_reconciliation" in reason


def test_an_invalidated_slot_is_down_and_says_how_to_drop_it():
    status, reason = assess_slot("s", _state(wal_status="lost"))
    assert status == DOWN
    assert "SELECT pg_drop_replication_slot('s');" in reason


def test_a_slot_without_client_is_degraded():
    status, reason = assess_slot("s", _state(active=False))
    assert status == DEGRADED and "no client streams" in reason


def test_a_slot_retaining_too_much_wal_is_degraded_with_the_amount():
    status, reason = assess_slot("s", _state(retained=300 * MB), max_retained=100 * MB)
    assert status == DEGRADED and "retains 300 MB of WAL (limit 100 MB)" in reason
    assert "the connector is behind" in reason
