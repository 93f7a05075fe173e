"""Helpers of the pipeline tests: the OLTP truth, the DWH side of the spec's queries, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg2
from psycopg2 import sql

from instashop.devstack import generator
from instashop.ops.process import wait_until
from instashop.warehouse import migrations, partitions
from instashop.warehouse.spec_queries import SPEC_QUERIES

# The same answers computed from the shop's own tables.
TRUTH_QUERIES = {
    "transacciones": """
SELECT DATE(created_at AT TIME ZONE 'UTC'), COUNT(*), SUM(total_amount), AVG(total_amount)
FROM transactions GROUP BY 1 ORDER BY 1 DESC
""",
    "clientes": """
WITH events AS (
    SELECT customer_id, NULL::numeric AS spend FROM page_views
    UNION ALL SELECT customer_id, NULL FROM searches
    UNION ALL SELECT customer_id, NULL FROM cart_events
    UNION ALL SELECT customer_id, total_amount FROM transactions
)
SELECT c.customer_id, c.name, COUNT(*), COUNT(e.spend), COALESCE(SUM(e.spend), 0)
FROM events e JOIN customers c USING (customer_id)
GROUP BY c.customer_id, c.name ORDER BY 5 DESC
""",
    "productos": """
SELECT p.product_id, p.name, p.category, COUNT(*), SUM(i.amount), AVG(i.amount)
FROM transaction_items i JOIN products p USING (product_id)
GROUP BY p.product_id, p.name, p.category ORDER BY 5 DESC
""",
    "sesiones": """
SELECT CASE
         WHEN s.ended_at IS NULL THEN NULL
         WHEN EXISTS (SELECT 1 FROM transactions t WHERE t.session_id = s.session_id) THEN 'conversion'
         WHEN EXISTS (SELECT 1 FROM cart_events c WHERE c.session_id = s.session_id AND c.action = 'add')
           THEN 'cart_abandonment'
         ELSE 'bounce'
       END,
       COUNT(*),
       AVG(EXTRACT(EPOCH FROM (COALESCE(s.ended_at, s.started_at) - s.started_at)))
FROM sessions s GROUP BY 1
""",
}

# Rows per source table vs rows per event type: the cheap check that the pipeline caught up.
COUNTS_OLTP = """
SELECT 'transaction', count(*) FROM transactions UNION ALL SELECT 'transaction_item', count(*) FROM transaction_items
UNION ALL SELECT 'user_behavior', count(*) FROM page_views UNION ALL SELECT 'search', count(*) FROM searches
UNION ALL SELECT 'cart_event', count(*) FROM cart_events UNION ALL SELECT 'sessions', count(*) FROM sessions
UNION ALL SELECT 'paid', count(*) FROM transactions WHERE status = 'paid'
"""
COUNTS_DWH = """
SELECT event_type, count(*) FROM realtime_events GROUP BY 1
UNION ALL SELECT 'sessions', count(*) FROM customer_sessions
UNION ALL SELECT 'paid', count(*) FROM realtime_events WHERE event_type = 'transaction' AND raw_data->>'status' = 'paid'
"""


class Background(threading.Thread):
    """`target(*args, **kwargs)` in a thread; `finish` joins it with a timeout and hands back its
    result, or raises what it raised: a writer that hung or died fails the test that waits for it."""

    def __init__(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(name=getattr(target, "__name__", "background"), daemon=True)
        self._call = lambda: target(*args, **kwargs)
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as err:  # handed to the test by finish()
            self.error = err

    def finish(self, timeout: float) -> Any:
        joined(self, timeout)
        if self.error is not None:
            raise self.error
        return self.result


def joined(thread: threading.Thread, timeout: float) -> None:
    """Join with a timeout and fail if the thread is still running."""
    thread.join(timeout)
    assert not thread.is_alive(), f"thread {thread.name!r} still running after {timeout:.0f}s"


def run_sessions(settings, session_prefix: str) -> tuple[int, int]:
    """(OLTP, DWH) count of the sessions whose id starts with `session_prefix` (one generator run)."""
    like = (session_prefix + "%",)
    query = "SELECT count(*) FROM {} WHERE session_id LIKE %s"
    return (
        _fetch_args(settings.oltp_dsn, query.format("sessions"), like)[0][0],
        _fetch_args(settings.dwh_readonly_dsn, query.format("customer_sessions"), like)[0][0],
    )


def _fetch_args(dsn: str, query: str, args: tuple) -> list[tuple]:
    with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def drop_day_partitions(conn, days) -> None:
    """Drop the daily partitions of `days` (and their rows), those that exist."""
    for day in days:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(day)}")


def fetch(dsn: str, query: str) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def execute(dsn: str, statement: str, args: tuple | dict | None = None) -> int:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.rowcount


def normalise(rows: list[tuple], query: str) -> list[tuple]:
    """Order-independent rows; averages rounded (the only inexact values), sums kept exact."""

    def cell(value):
        if isinstance(value, float):
            return round(value, 3)
        if isinstance(value, Decimal) and value.as_tuple().exponent < -2:
            return round(value, 6)
        return value

    return sorted((tuple(cell(v) for v in row) for row in rows), key=repr)


def counts(settings) -> tuple[dict, dict]:
    oltp = dict(fetch(settings.oltp_dsn, COUNTS_OLTP))
    dwh = dict(fetch(settings.dwh_readonly_dsn, COUNTS_DWH))
    return oltp, {k: dwh.get(k, 0) for k in oltp}


def wait_until_caught_up(settings, timeout: float = 120.0) -> None:
    """Until the DWH holds as many rows per event type as the OLTP (then a little longer for sessions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        oltp, dwh = counts(settings)
        if oltp == dwh:
            time.sleep(1.0)  # session refreshes of the last batch
            if counts(settings)[0] == counts(settings)[1]:
                return
        time.sleep(1.0)
    oltp, dwh = counts(settings)
    raise AssertionError(f"DWH did not catch up within {timeout:.0f}s: oltp={oltp} dwh={dwh}")


def spec_answers_equal_truth(settings) -> dict[str, tuple[list, list]]:
    """Every spec query's answer on the DWH and the truth from the OLTP, for comparison."""
    return {
        name: (
            normalise(fetch(settings.dwh_readonly_dsn, SPEC_QUERIES[name]), name),
            normalise(fetch(settings.oltp_dsn, TRUTH_QUERIES[name]), name),
        )
        for name in SPEC_QUERIES
    }


@contextmanager
def scratch_warehouse(settings, name: str, first_day: date, last_day: date) -> Iterator:
    """A fresh database `name` migrated like `dwh`, with daily partitions for first_day..last_day;
    yields a superuser connection to it and drops the database afterwards."""
    _recreate(settings, name, drop_only=False)
    migrations.migrate(settings, (migrations.Target("dwh", name, "postgres", "dwh"),))
    conn = psycopg2.connect(settings.dwh_admin(name))
    try:
        partitions.ensure_daily_partitions(conn, first_day, last_day)
        yield conn
    finally:
        conn.close()
        _recreate(settings, name, drop_only=True)


def _recreate(settings, name: str, drop_only: bool) -> None:
    with closing(psycopg2.connect(settings.dwh_admin("postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if not drop_only:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def settled_cart_event(settings) -> tuple[str, datetime, Any]:
    """A cart event older than the settle time, within today or yesterday (generating some if needed)."""
    query = (
        "SELECT event_key, \"timestamp\", amount FROM realtime_events WHERE event_type = 'cart_event' "
        "AND \"timestamp\" < (now() AT TIME ZONE 'UTC') - interval '2 minutes' "
        "AND \"timestamp\" >= date_trunc('day', now() AT TIME ZONE 'UTC') - interval '1 day' "
        'ORDER BY "timestamp" DESC LIMIT 1'
    )
    rows = fetch(settings.dwh_readonly_dsn, query)
    if not rows:
        generator.run(settings.oltp_dsn, generator.GeneratorConfig(rate=0, sessions=50, seed=31), console=None)
        wait_until_caught_up(settings)

        def settled() -> bool:  # one of the new cart events is older than the settle time (2 minutes)
            rows[:] = fetch(settings.dwh_readonly_dsn, query)
            return bool(rows)

        wait_until(settled, 180, 5)
    assert rows, "no cart event to tamper with"
    return rows[0]
