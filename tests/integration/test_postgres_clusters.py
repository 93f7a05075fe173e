"""The shop and the warehouse run on their own PostgreSQL clusters.

Debezium decodes the whole WAL of the cluster it replicates. With the warehouse on the shop's
cluster, every row the consumer wrote sat in that WAL too: after a 1M-row ingest the first new
shop change waited ~60 s behind the decoding of the warehouse's own writes.
"""

from contextlib import closing

import psycopg2
import pytest

pytestmark = pytest.mark.integration

WAREHOUSE_WRITE_MB = 64


def _fetch_one(dsn: str, statement: str):
    with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchone()[0]


def _wal_position(dsn: str) -> int:
    return int(_fetch_one(dsn, "SELECT pg_current_wal_lsn() - '0/0'"))


def test_warehouse_writes_never_enter_the_wal_that_debezium_decodes(settings):
    warehouse_admin = settings.dwh_admin("dwh")
    shop_before, warehouse_before = _wal_position(settings.oltp_dsn), _wal_position(warehouse_admin)
    with closing(psycopg2.connect(warehouse_admin)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE wal_probe AS SELECT repeat('x', 1000) AS payload FROM generate_series(1, %s)",
            (WAREHOUSE_WRITE_MB * 1000,),
        )
        cur.execute("DROP TABLE wal_probe")
    shop_wal = _wal_position(settings.oltp_dsn) - shop_before
    warehouse_wal = _wal_position(warehouse_admin) - warehouse_before

    assert warehouse_wal > WAREHOUSE_WRITE_MB * 1_000_000 * 0.9, "the probe did not write what it should"
    # The shop's own traffic (the generator, Debezium's heartbeats) may run meanwhile: a tenth is
    # far above it and far below the warehouse's write.
    assert shop_wal < warehouse_wal / 10, f"shop WAL grew {shop_wal} B while the warehouse wrote {warehouse_wal} B"


def test_shop_and_warehouse_are_different_servers(settings):
    identifier = "SELECT system_identifier FROM pg_control_system()"
    assert _fetch_one(settings.shop_admin("instashop"), identifier) != _fetch_one(settings.dwh_admin("dwh"), identifier)


def test_only_the_shop_cluster_decodes_logically(settings):
    assert _fetch_one(settings.shop_admin("instashop"), "SHOW wal_level") == "logical"
    assert _fetch_one(settings.dwh_admin("dwh"), "SHOW wal_level") == "replica"


@pytest.mark.parametrize(
    ("cluster", "absent"),
    [
        ("shop", ("dwh_writer", "dwh_readonly", "dwh_maintainer", "airflow", "superset", "jdbc_sink")),
        ("dwh", ("instashop_app", "debezium")),
    ],
)
def test_each_cluster_has_only_its_own_roles(settings, cluster, absent):
    admin = settings.shop_admin("postgres") if cluster == "shop" else settings.dwh_admin("postgres")
    with closing(psycopg2.connect(admin)) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(absent),))
        assert cur.fetchall() == []
