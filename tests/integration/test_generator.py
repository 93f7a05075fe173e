"""The generator against the real OLTP database: what it commits holds the shop's invariants.

Other tests write to the same database, so every assertion is scoped to the sessions of this
module's runs (their ids start with the run's session prefix).
"""

import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import UTC, datetime

import psycopg2
import pytest

from instashop.devstack import generator
from instashop.devstack.generator import GeneratorConfig
from instashop.devstack.generator.catalog import load_catalog, seed_catalog
from instashop.devstack.generator.lifecycle import LifecycleRates, Settle
from instashop.devstack.generator.sessions import BOUNCE, CART_ABANDONMENT, CONVERSION, OutcomeMix, plan_session
from instashop.devstack.generator.writer import ShopWriter
from tests.support.pipeline import joined

pytestmark = pytest.mark.integration

# Later changes are made frequent here so a short run exercises every update and delete path.
BUSY_LIFECYCLE = LifecycleRates(
    payment_failure=0.3, refund=0.3, delete_failed=0.5, delete_bounce=0.2, price_change=0.05
)


@pytest.fixture(scope="module")
def oltp(settings):
    conn = psycopg2.connect(settings.oltp_dsn)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def summary(settings):
    config = GeneratorConfig(rate=0, sessions=300, seed=20240917, customers=50, products=40, lifecycle=BUSY_LIFECYCLE)
    return generator.run(settings.oltp_dsn, config, show_progress=False)


def _rows(conn, sql: str, *params) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _like(summary) -> str:
    return summary.session_prefix + "%"


def test_the_run_wrote_what_it_was_asked(summary):
    assert summary.stopped_by == "sessions"
    assert summary.session_count == 300
    assert all(summary.sessions[outcome] > 0 for outcome in (CONVERSION, CART_ABANDONMENT, BOUNCE))
    assert summary.row_changes > 300


def test_every_total_is_the_exact_sum_of_its_items(oltp, summary):
    wrong = _rows(
        oltp,
        "SELECT t.transaction_id, t.total_amount, sum(i.amount) FROM transactions t"
        " LEFT JOIN transaction_items i USING (transaction_id) WHERE t.session_id LIKE %s"
        " GROUP BY t.transaction_id HAVING count(i.*) = 0 OR t.total_amount <> sum(i.amount)",
        _like(summary),
    )
    assert wrong == []
    lines = _rows(
        oltp,
        "SELECT count(*) FILTER (WHERE i.amount <> i.quantity * i.unit_price) FROM transaction_items i"
        " JOIN transactions t USING (transaction_id) WHERE t.session_id LIKE %s",
        _like(summary),
    )
    assert lines == [(0,)]


def test_cart_amounts_are_quantity_times_unit_price(oltp, summary):
    rows = _rows(
        oltp,
        "SELECT count(*), count(*) FILTER (WHERE amount <> quantity * unit_price) FROM cart_events"
        " WHERE session_id LIKE %s",
        _like(summary),
    )
    assert rows[0][0] > 0 and rows[0][1] == 0


def test_every_session_has_ended_after_its_events(oltp, summary):
    unended = _rows(
        oltp,
        "SELECT count(*) FROM sessions WHERE session_id LIKE %s AND (ended_at IS NULL OR ended_at <= started_at)",
        _like(summary),
    )
    assert unended == [(0,)]
    outside = _rows(
        oltp,
        """
        WITH events AS (
            SELECT session_id, viewed_at AS at FROM page_views
            UNION ALL SELECT session_id, searched_at FROM searches
            UNION ALL SELECT session_id, created_at FROM cart_events
            UNION ALL SELECT session_id, created_at FROM transactions WHERE session_id IS NOT NULL
        )
        SELECT s.session_id, count(*), count(DISTINCT e.at) FROM sessions s JOIN events e USING (session_id)
        WHERE s.session_id LIKE %s
        GROUP BY s.session_id
        HAVING min(e.at) < min(s.started_at) OR max(e.at) > min(s.ended_at) OR count(*) <> count(DISTINCT e.at)
        """,
        _like(summary),
    )
    assert outside == []


def test_sessions_hold_their_outcome_definitions(oltp, summary):
    classified = dict(
        _rows(
            oltp,
            """
            SELECT CASE
                WHEN EXISTS (SELECT 1 FROM transactions t WHERE t.session_id = s.session_id) THEN 'conversion'
                WHEN EXISTS (SELECT 1 FROM cart_events c WHERE c.session_id = s.session_id AND c.action = 'add')
                    THEN 'cart_abandonment'
                ELSE 'bounce' END,
                count(*)
            FROM sessions s WHERE s.session_id LIKE %s GROUP BY 1
            """,
            _like(summary),
        )
    )
    purged = summary.deleted["failed transactions"]  # their sessions now look abandoned
    assert classified == {
        CONVERSION: summary.sessions[CONVERSION] - purged,
        CART_ABANDONMENT: summary.sessions[CART_ABANDONMENT] + purged,
        BOUNCE: summary.sessions[BOUNCE] - summary.deleted["bounced sessions"],
    }
    assert all(n > 0 for n in classified.values())


def test_bounces_are_a_page_view_or_two_and_nothing_else(oltp, summary):
    bounces = _rows(
        oltp,
        """
        SELECT s.session_id,
            (SELECT count(*) FROM page_views v WHERE v.session_id = s.session_id),
            (SELECT count(*) FROM searches q WHERE q.session_id = s.session_id)
        FROM sessions s
        WHERE s.session_id LIKE %s AND NOT EXISTS (SELECT 1 FROM cart_events c WHERE c.session_id = s.session_id)
        """,
        _like(summary),
    )
    assert bounces and all(1 <= views <= 2 and searches == 0 for _, views, searches in bounces)


def test_statuses_moved_on_exactly_as_the_summary_says(oltp, summary):
    statuses = dict(
        _rows(oltp, "SELECT status, count(*) FROM transactions WHERE session_id LIKE %s GROUP BY 1", _like(summary))
    )
    assert set(statuses) <= {"pending", "paid", "failed", "refunded"}
    updated, deleted = summary.updated, summary.deleted
    settled = updated["transactions -> paid"] + updated["transactions -> failed"]
    assert statuses.get("paid", 0) == updated["transactions -> paid"] - updated["transactions -> refunded"]
    assert statuses.get("refunded", 0) == updated["transactions -> refunded"]
    assert statuses.get("failed", 0) == updated["transactions -> failed"] - deleted["failed transactions"]
    assert statuses.get("pending", 0) == summary.sessions[CONVERSION] - settled
    assert statuses["paid"] > 0 and statuses.get("pending", 0) < sum(statuses.values())
    assert updated["transactions -> refunded"] > 0 and deleted["failed transactions"] > 0
    assert deleted["bounced sessions"] > 0 and updated["products price"] > 0


def test_moved_transactions_were_updated_later(oltp, summary):
    rows = _rows(
        oltp,
        "SELECT status = 'pending', bool_and(updated_at = created_at), bool_and(updated_at > created_at)"
        " FROM transactions WHERE session_id LIKE %s GROUP BY 1",
        _like(summary),
    )
    for pending, unchanged, later in rows:
        assert unchanged if pending else later


def test_session_ids_are_sess_hex(oltp, summary):
    ids = [row[0] for row in _rows(oltp, "SELECT session_id FROM sessions WHERE session_id LIKE %s", _like(summary))]
    assert ids and all(re.fullmatch(r"sess_[0-9a-f]{20}", session_id) for session_id in ids)


def test_the_rate_limits_a_run(settings):
    """The pacing keeps a run from writing as fast as it can. How close it holds the rate depends on
    the machine's load: benchmarks/generator_rate.py prints that figure. Here only a bound a working
    limiter cannot miss: rate x duration, plus the session that may start at the end, three times
    over (unpaced, this machine writes ~500 row changes/s, 5-10x the bound)."""
    config = GeneratorConfig(rate=50, duration=2.0, seed=7, customers=50, products=40)
    run = generator.run(settings.oltp_dsn, config, show_progress=False)
    assert run.stopped_by == "duration" and run.row_changes > 0
    bound = 3 * config.rate * config.duration
    assert run.row_changes <= bound, f"{run.row_changes} row changes in {run.elapsed_s:.1f} s (at most {bound:.0f})"


def test_sigterm_stops_cleanly_after_the_current_session(oltp):
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "instashop.cli", "generate", "--rate", "300", "--customers", "50"]
    proc = subprocess.Popen([*command, "--products", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    started = b""
    while b"started" not in started and proc.poll() is None:  # the log line comes once signals are handled
        started = proc.stderr.readline()
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert re.search(r"stopped by\s+│\s+signal", text), text
    run_id = re.search(r"generator run ([0-9a-f]{12})", text).group(1)
    rows = _rows(
        oltp,
        "SELECT count(*), count(*) FILTER (WHERE ended_at IS NULL) FROM sessions WHERE session_id LIKE %s",
        f"sess_{run_id}%",
    )
    assert rows[0][0] > 0 and rows[0][1] == 0


def test_same_seed_writes_the_same_workload_again(settings, oltp):
    # Prices may differ (the first run's price changes are the second run's starting state); the rest may not.
    runs = [
        generator.run(settings.oltp_dsn, GeneratorConfig(rate=0, sessions=120, seed=77), show_progress=False)
        for _ in range(2)
    ]

    def workload(run) -> list[tuple]:
        return _rows(
            oltp,
            """
            SELECT right(s.session_id, 8), s.customer_id, s.device,
                (SELECT array_agg(v.page_type || ':' || coalesce(v.product_id::text, '') ORDER BY v.viewed_at)
                 FROM page_views v WHERE v.session_id = s.session_id),
                (SELECT array_agg(q.query || ':' || q.results_count ORDER BY q.searched_at)
                 FROM searches q WHERE q.session_id = s.session_id),
                (SELECT array_agg(c.action || c.product_id || 'x' || c.quantity ORDER BY c.created_at)
                 FROM cart_events c WHERE c.session_id = s.session_id),
                (SELECT array_agg(t.status || ':' || t.payment_method) FROM transactions t
                 WHERE t.session_id = s.session_id)
            FROM sessions s WHERE s.session_id LIKE %s ORDER BY 1
            """,
            _like(run),
        )

    assert runs[0].run_id != runs[1].run_id
    assert (runs[0].sessions, runs[0].updated, runs[0].deleted) == (runs[1].sessions, runs[1].updated, runs[1].deleted)
    first = workload(runs[0])
    assert first and first == workload(runs[1])


# --- a lost connection (a database restart) is ridden out -------------------------------------------


def _cut_next_commit(reaches_server: bool) -> type:
    """A connection whose first commit is cut: after the server committed (only the answer is lost) or before."""

    class CutConnection(psycopg2.extensions.connection):
        def commit(self) -> None:
            if reaches_server:
                super().commit()
            self.close()
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

    return CutConnection


@pytest.mark.parametrize("reaches_server", [True, False], ids=["answer-lost", "commit-lost"])
def test_a_transaction_cut_at_commit_is_written_exactly_once(settings, oltp, reaches_server):
    factories = iter([_cut_next_commit(reaches_server), None, _cut_next_commit(reaches_server)])

    def connect():
        return psycopg2.connect(settings.oltp_dsn, connection_factory=next(factories, None))

    with closing(psycopg2.connect(settings.oltp_dsn)) as plain:
        seed_catalog(plain, random.Random(3), customers=50, products=40)
        catalog = load_catalog(plain)
    writer = ShopWriter(connect, reconnect_for=30)
    plan = plan_session(random.Random(3), catalog, OutcomeMix(1, 0, 0))
    session_id = f"sess_cut{secrets.token_hex(8)}"

    transaction_id = writer.write_session(plan, session_id, datetime.now(UTC))
    assert writer.reconnects == 1
    assert _rows(oltp, "SELECT count(*) FROM sessions WHERE session_id = %s", session_id) == [(1,)]
    assert _rows(oltp, "SELECT transaction_id FROM transactions WHERE session_id = %s", session_id) == [
        (transaction_id,)
    ]

    writer.conn.close()  # the next connection cuts the commit of a later change
    writer.conn = connect()
    # One row changed, whether the first try committed or not: the count stays true.
    assert writer.apply(Settle(transaction_id, "paid"), datetime.now(UTC)) == 1
    assert writer.reconnects == 2
    assert _rows(oltp, "SELECT status FROM transactions WHERE transaction_id = %s", transaction_id) == [("paid",)]
    writer.conn.close()


def test_a_run_rides_out_terminated_connections_and_its_counts_stay_true(settings, oltp):
    # No deletes: then every row the summary counts is still there to be counted.
    lifecycle = LifecycleRates(payment_failure=0.3, refund=0.3, delete_failed=0, delete_bounce=0, price_change=0)
    config = GeneratorConfig(rate=300, duration=8, seed=8, customers=50, products=40, lifecycle=lifecycle)
    result: dict = {}
    run = threading.Thread(
        target=lambda: result.update(summary=generator.run(settings.oltp_dsn, config, show_progress=False))
    )
    run.start()
    terminated = 0
    with closing(psycopg2.connect(settings.shop_admin("instashop"))) as admin:
        admin.autocommit = True  # pg_stat_activity is a snapshot per transaction
        for _ in range(3):
            time.sleep(1.5)
            terminated += _rows(
                admin,
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                f"instashop-generator-{config.run_id}",
            )[0][0]
    joined(run, timeout=120)

    summary = result["summary"]  # the run did not die on a lost connection
    assert summary.stopped_by == "duration"
    assert terminated >= 1 and summary.reconnects == terminated
    like = _like(summary)
    tables = {
        "sessions": "SELECT count(*) FROM sessions WHERE session_id LIKE %s",
        "page_views": "SELECT count(*) FROM page_views WHERE session_id LIKE %s",
        "searches": "SELECT count(*) FROM searches WHERE session_id LIKE %s",
        "cart_events": "SELECT count(*) FROM cart_events WHERE session_id LIKE %s",
        "transactions": "SELECT count(*) FROM transactions WHERE session_id LIKE %s",
        "transaction_items": "SELECT count(*) FROM transaction_items JOIN transactions USING (transaction_id)"
        " WHERE session_id LIKE %s",
    }
    assert {table: _rows(oltp, sql, like)[0][0] for table, sql in tables.items()} == dict(summary.inserted)
    statuses = dict(_rows(oltp, "SELECT status, count(*) FROM transactions WHERE session_id LIKE %s GROUP BY 1", like))
    updated = summary.updated
    assert statuses.get("failed", 0) == updated["transactions -> failed"]
    assert statuses.get("refunded", 0) == updated["transactions -> refunded"]
    assert statuses.get("paid", 0) == updated["transactions -> paid"] - updated["transactions -> refunded"]
    ended = _rows(oltp, "SELECT count(*) FROM sessions WHERE session_id LIKE %s AND ended_at IS NOT NULL", like)
    assert ended == [(updated["sessions ended_at"],)]


def test_a_product_too_dear_to_sell_is_left_unsold_and_the_run_goes_on(settings, oltp):
    """A catalogue price at numeric(12,2)'s limit would overflow quantity x price: the run skips it."""
    with oltp.cursor() as cur:
        cur.execute(
            "INSERT INTO products (name, category, price) VALUES ('Crown Jewels', 'Electronics', 9999999999.99) "
            "RETURNING product_id"
        )
        (dear,) = cur.fetchone()
    try:
        assert dear not in {p.product_id for p in load_catalog(oltp).products}
        summary = generator.run(settings.oltp_dsn, GeneratorConfig(rate=400, sessions=60, seed=12), console=None)
        assert summary.session_count == 60
        sold = _rows(
            oltp,
            "SELECT (SELECT count(*) FROM cart_events WHERE product_id = %s)"
            " + (SELECT count(*) FROM transaction_items WHERE product_id = %s)",
            dear,
            dear,
        )
        assert sold == [(0,)]
    finally:
        with oltp.cursor() as cur:
            cur.execute("DELETE FROM products WHERE product_id = %s", (dear,))
