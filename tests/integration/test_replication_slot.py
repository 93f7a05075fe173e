"""The replication-slot check against the shop's real PostgreSQL cluster, on a slot of its own (the
connector's slot is left alone: dropping it would lose the suite's changes).

What operators of Debezium report most: a slot nobody streams from keeps WAL until the disk is
full, and a dropped slot silently loses every change until the connector makes a new one.
"""

import uuid
from contextlib import closing

import psycopg2
import pytest

from instashop.ops.replication_slot import check_slot
from instashop.ops.supervisor import DEGRADED, DOWN

pytestmark = pytest.mark.integration


def _admin(settings, statement: str, *args) -> None:
    with closing(psycopg2.connect(settings.shop_admin("instashop"), connect_timeout=5)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, args)


@pytest.fixture
def scratch_slot(settings):
    slot = f"it_slot_{uuid.uuid4().hex[:8]}"
    _admin(settings, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", slot)
    yield slot
    _admin(settings, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", slot)


def test_a_slot_without_client_keeping_wal_is_reported_then_its_loss_says_what_to_run(settings, scratch_slot):
    # Read as stream_supervisor reads it: the shop's read-only role.
    with closing(psycopg2.connect(settings.oltp_dsn, options="-c default_transaction_read_only=on")) as shop:
        idle = check_slot(shop, scratch_slot)
        assert idle.status == DEGRADED, idle
        assert idle.details["exists"] is True and idle.details["active"] is False
        assert "no client streams from replication slot" in idle.details["reason"]

        # 2 MB of shop WAL that nobody confirms (a table outside the publication): the slot keeps it.
        filler = f"it_wal_filler_{scratch_slot}"
        _admin(settings, f"CREATE TABLE {filler} AS SELECT repeat('x', 1000) AS pad FROM generate_series(1, 2000)")
        _admin(settings, f"DROP TABLE {filler}")
        retaining = check_slot(shop, scratch_slot, max_retained=1024 * 1024)
        assert retaining.status == DEGRADED, retaining
        assert retaining.details["retained_wal_bytes"] > 1024 * 1024
        assert "retains" in retaining.details["reason"]

        _admin(settings, "SELECT pg_drop_replication_slot(%s)", scratch_slot)
        gone = check_slot(shop, scratch_slot)
    assert gone.status == DOWN and gone.details["exists"] is False
    assert "`instashop connector restart`" in gone.details["reason"]
