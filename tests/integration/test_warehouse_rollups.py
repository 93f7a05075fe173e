"""Daily rollups and partition pruning on the real PostgreSQL.

On a scratch database migrated like `dwh` (`dwh_rollups_test`, a few hundred known rows over four
days, dropped afterwards): the rollups answer the spec's four queries exactly like the base tables,
over all days and over a range, after changes and after retention dropped a day; and a date-bounded
spec query only reads the partitions of its days. Then the dwh_rollups DAG is run with dag.test() on
the live `dwh`, on a synthetic day of its own (2000-04-01), removed again at once.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg2
import psycopg2.extras
import pytest
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from instashop.warehouse import migrations, partitions, rollups
from instashop.warehouse.day_ranges import DayRange
from instashop.warehouse.spec_queries import SPEC_QUERIES
from tests.support.airflow import run_dag
from tests.support.pipeline import scratch_warehouse

pytestmark = pytest.mark.integration

SCRATCH_DB = "dwh_rollups_test"
DAYS = [date(2026, 3, 1) + timedelta(days=n) for n in range(4)]
CUSTOMERS = [(1, "Ana García"), (2, None), (3, "Bo Silva"), (3, "Bo Silva-Renamed")]  # a rename: two groups
PRODUCTS = [(10, "Acme Mug", "Home"), (11, "Lumo Pen", None), (None, None, None)]


# --- the scratch warehouse ---------------------------------------------------------------------


def _events(day: date, rng: random.Random, tag: str) -> list[tuple]:
    """Every event type with cents, NULL amounts, NULL names and products, several sessions."""
    rows = []
    for n in range(60):
        event_type = rng.choice(["transaction", "transaction_item", "user_behavior", "search", "cart_event"])
        customer, product = rng.choice(CUSTOMERS), rng.choice(PRODUCTS)
        amount = None if rng.random() < 0.1 else Decimal(rng.randint(1, 99_999)) / 100
        if event_type == "transaction_item":
            customer = (None, None)
        if event_type in ("user_behavior", "search"):
            amount = None
        at = datetime.combine(day, datetime.min.time()) + timedelta(minutes=23 * n)
        rows.append((event_type, at, *customer, *product, amount, f"sess_{day:%d}_{n % 7}", f"{tag}{day}:{n}"))
    return rows


def _sessions(day: date) -> list[tuple]:
    """Ended sessions of each outcome, an open one (no outcome) and one without a start_time."""
    start = datetime.combine(day, datetime.min.time()) + timedelta(hours=9)
    rows = []
    for n, outcome in enumerate(["conversion", "cart_abandonment", "bounce", "bounce", None, "bounce"]):
        data = {"start_time": (start + timedelta(seconds=n)).isoformat()} if n < 5 else {}
        rows.append((f"sess_{day:%d}_{n}", 1, json.dumps(data), outcome, start + timedelta(minutes=3 * n + 1)))
    return rows


def _insert(conn, days: list[date], seed: int = 3, tag: str = "", sessions: bool = True) -> None:
    rng = random.Random(seed)
    with conn, conn.cursor() as cur:
        for day in days:
            psycopg2.extras.execute_values(
                cur,
                'INSERT INTO realtime_events (event_type, "timestamp", customer_id, customer_name, product_id, '
                "product_name, category, amount, session_id, event_key, source_lsn) VALUES %s",
                _events(day, rng, tag),
                template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
            )
            if not sessions:
                continue
            psycopg2.extras.execute_values(
                cur,
                'INSERT INTO customer_sessions (session_id, customer_id, session_data, outcome, "timestamp") VALUES %s',
                _sessions(day),
            )


@pytest.fixture
def scratch(settings) -> Iterator[psycopg2.extensions.connection]:
    """A fresh database migrated like `dwh` with DAYS of known rows; a superuser connection to it."""
    with scratch_warehouse(settings, SCRATCH_DB, DAYS[0], DAYS[-1] + timedelta(days=2)) as conn:
        _insert(conn, DAYS)
        yield conn


def _readonly(settings):
    """Superset's role: it must be able to read the rollups."""
    return closing(psycopg2.connect(make_dsn(settings.dwh_readonly_dsn, dbname=SCRATCH_DB)))


def _spec_answer(cur, name: str, first: date | None = None, last: date | None = None) -> Counter:
    """The spec query verbatim, over the rows of first..last when given (its tables, filtered)."""
    query = SPEC_QUERIES[name]
    if first:
        for table in ("realtime_events", "customer_sessions"):
            query = query.replace(
                f"FROM {table} ",
                f'FROM (SELECT * FROM {table} WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s) {table} ',
            )
    bounds = {"start": first, "end": last and last + timedelta(days=1)}
    cur.execute(query, bounds)
    return Counter(cur.fetchall())


def _rollup_answer(cur, name: str, first: date | None = None, last: date | None = None) -> Counter:
    if first:
        cur.execute(rollups.RANGE_QUERIES[name], {"first": first, "last": last})
    else:
        cur.execute(rollups.DASHBOARD_QUERIES[name])
    return Counter(cur.fetchall())


def _assert_rollups_answer_like_the_spec(settings, first: date | None = None, last: date | None = None) -> None:
    with _readonly(settings) as conn, conn.cursor() as cur:
        for name in SPEC_QUERIES:
            spec = _spec_answer(cur, name, first, last)
            assert spec, f"{name}: no rows to compare"
            assert _rollup_answer(cur, name, first, last) == spec, name


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_rollups_answer_the_spec_queries_exactly_and_a_rerun_changes_nothing(settings, scratch):
    report = rollups.refresh(scratch, DayRange(DAYS[0], DAYS[-1]))
    assert report["pruned_rows"] == 0 and set(report["days"]) == {d.isoformat() for d in DAYS}
    _assert_rollups_answer_like_the_spec(settings)
    _assert_rollups_answer_like_the_spec(settings, DAYS[1], DAYS[2])

    with _readonly(settings) as conn, conn.cursor() as cur:
        before = {t: _table(cur, t) for t in (*rollups.TABLES, "customer_totals")}
    rollups.refresh(scratch, DayRange(DAYS[0], DAYS[-1]))
    with _readonly(settings) as conn, conn.cursor() as cur:
        assert {t: _table(cur, t) for t in (*rollups.TABLES, "customer_totals")} == before


@pytest.mark.timeout(120)
def test_a_refresh_picks_up_changes_of_its_days_and_drops_days_retention_removed(settings, scratch):
    rollups.refresh(scratch, DayRange(DAYS[0], DAYS[-1]))
    with scratch, scratch.cursor() as cur:  # a refund, a clean-up delete, a late event, an outcome settled
        cur.execute("UPDATE realtime_events SET amount = amount + 1 WHERE event_type = 'transaction' AND amount > 0")
        cur.execute("DELETE FROM realtime_events WHERE event_key = %s", (f"{DAYS[3]}:5",))
        cur.execute("UPDATE customer_sessions SET outcome = 'bounce' WHERE outcome IS NULL")
    _insert(scratch, [DAYS[3]], seed=4, tag="late:", sessions=False)
    with _readonly(settings) as conn, conn.cursor() as cur:  # stale until refreshed
        assert _rollup_answer(cur, "transacciones") != _spec_answer(cur, "transacciones")
        assert _rollup_answer(cur, "clientes") != _spec_answer(cur, "clientes")
    rollups.refresh(scratch, DayRange(DAYS[0], DAYS[-1]))
    _assert_rollups_answer_like_the_spec(settings)

    with scratch, scratch.cursor() as cur:  # retention drops the oldest day's partition
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partitions.partition_name(DAYS[0]))))
    report = rollups.refresh(scratch, DayRange(DAYS[-1], DAYS[-1]))
    assert report["pruned_rows"] > 0
    _assert_rollups_answer_like_the_spec(settings)  # the sessions of that day are kept, as by the spec query


@pytest.mark.timeout(60)
def test_the_migration_fills_the_rollups_from_the_rows_already_there(settings, scratch):
    """Deployed on a warehouse with history: the rollups start complete, not only from yesterday on."""
    migration = migrations.SQL_DIR / "dwh" / "006_daily_rollups.sql"
    with scratch, scratch.cursor() as cur:
        cur.execute(migration.read_text())  # (its CREATEs are IF NOT EXISTS: here only the fill runs)
    _assert_rollups_answer_like_the_spec(settings)


@pytest.mark.timeout(60)
def test_a_date_bounded_spec_query_reads_only_the_partitions_of_its_days(settings, scratch):
    with _readonly(settings) as conn, conn.cursor() as cur:
        for name in ("transacciones", "clientes", "productos"):
            query = SPEC_QUERIES[name].replace(
                "FROM realtime_events ",
                'FROM (SELECT * FROM realtime_events WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s) '
                "realtime_events ",
            )
            cur.execute("EXPLAIN (FORMAT JSON) " + query, {"start": DAYS[1], "end": DAYS[3]})
            read = _relations(cur.fetchone()[0][0]["Plan"])
            assert read == {partitions.partition_name(DAYS[1]), partitions.partition_name(DAYS[2])}, name


def _relations(node: dict) -> set[str]:
    names = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", []):
        names |= _relations(child)
    return names


def _table(cur, table: str) -> Counter:
    cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
    return Counter(cur.fetchall())


# --- the dwh_rollups DAG on the live warehouse -----------------------------------------------------

DAG_DAY = date(2000, 4, 1)
_DAG_SESSIONS = "session_id LIKE 'rollups-test-%'"  # only ever used without query parameters


@pytest.fixture
def dag_day(settings) -> Iterator[None]:
    """Two transactions and an open session on a day of their own in `dwh`; all traces removed afterwards."""
    maintainer = psycopg2.connect(settings.dwh_maintainer_dsn)

    def clean() -> None:
        with maintainer, maintainer.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(DAG_DAY)}")
            for table in rollups.TABLES:
                cur.execute(sql.SQL("DELETE FROM {} WHERE day = %s").format(sql.Identifier(table)), (DAG_DAY,))
        with closing(psycopg2.connect(settings.dwh_dsn)) as writer, writer, writer.cursor() as cur:
            cur.execute(f"DELETE FROM customer_sessions WHERE {_DAG_SESSIONS}")

    clean()
    partitions.ensure_daily_partitions(maintainer, DAG_DAY, DAG_DAY)
    at = datetime(2000, 4, 1, 10)
    with closing(psycopg2.connect(settings.dwh_dsn)) as writer, writer, writer.cursor() as cur:
        for n, amount in enumerate(["10.25", "4.50"]):
            cur.execute(
                'INSERT INTO realtime_events (event_type, "timestamp", customer_id, customer_name, amount, '
                "event_key, source_lsn) VALUES ('transaction', %s, 7, 'Rollup Tester', %s, %s, 1)",
                (at + timedelta(minutes=n), amount, f"rollups-test:{n}"),
            )
        cur.execute(
            'INSERT INTO customer_sessions (session_id, customer_id, session_data, "timestamp") VALUES (%s, 7, %s, %s)',
            ("rollups-test-open", json.dumps({"start_time": at.isoformat()}), at + timedelta(seconds=90)),
        )
    try:
        yield
    finally:
        clean()
        maintainer.close()


@pytest.mark.timeout(300)
def test_the_dag_refreshes_a_range_given_by_hand(settings, dag_day):
    run = run_dag(settings, "dwh_rollups", {"start_date": DAG_DAY.isoformat(), "end_date": DAG_DAY.isoformat()})
    assert run.state == "success", run.output[-5000:]
    assert run.xcom["refresh_rollups"]["days"] == {
        "2000-04-01": {
            "daily_sales": 1,
            "daily_customer_activity": 1,
            "daily_product_sales": 0,
            "daily_session_outcomes": 1,
        }
    }
    with closing(psycopg2.connect(settings.dwh_readonly_dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT transactions, revenue, amounts FROM daily_sales WHERE day = %s", (DAG_DAY,))
        assert cur.fetchall() == [(2, Decimal("14.75"), 2)]
        cur.execute("SELECT outcome, sessions, duration_sum FROM daily_session_outcomes WHERE day = %s", (DAG_DAY,))
        assert cur.fetchall() == [(None, 1, Decimal("90"))]
