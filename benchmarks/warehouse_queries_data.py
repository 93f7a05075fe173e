"""The scratch warehouse `dwh_querybench` for benchmarks.warehouse_queries: --rows events made server-side
over --days daily partitions, their unpartitioned copy `flat.realtime_events`, and the rollups.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg2
import psycopg2.extras
from psycopg2 import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from instashop.devstack.generator.catalog import customer_row, product_row
from instashop.settings import Settings
from instashop.warehouse import migrations, partitions, rollups

BENCH_DB = "dwh_querybench"
FLAT = "flat"  # schema of the unpartitioned copy
CUSTOMERS, PRODUCTS = 20_000, 2_000
EVENTS_PER_SESSION = 14
# The benchmark's one console: the progress bars here and the tables of warehouse_queries share it.
console = Console(width=None if sys.stdout.isatty() else 140)  # a log file gets the whole table

# --- synthetic warehouse ----------------------------------------------------------------------

# The customer of a session: a fixed function of its number (events and sessions agree), skewed so
# that a few customers are much more active than most.
_CUSTOMER_OF = "1 + floor(%(customers)s * power((hashint8({session}) & 2147483647)::float8 / 2147483648.0, 1.6))::int"

# One day of events, in time order as the consumer appends them. Mix per the spec's event types:
# 58 % page views, 12 % searches, 15 % cart events, 5 % transactions, 10 % transaction items.
_DAY_EVENTS = f"""
INSERT INTO {{table}} (event_type, "timestamp", customer_id, customer_name, product_id, product_name,
                    category, amount, session_id, raw_data, processed_at, event_key, source_lsn)
SELECT e.event_type, e.ts, c.customer_id, c.name, p.product_id, p.name, p.category,
       CASE e.event_type WHEN 'transaction' THEN e.total
                         WHEN 'cart_event' THEN p.price * e.qty
                         WHEN 'transaction_item' THEN p.price * e.qty END,
       e.session_id,
       CASE e.event_type
         WHEN 'user_behavior' THEN jsonb_build_object('page_view_id', e.n, 'session_id', e.session_id,
              'customer_id', c.customer_id, 'page_type', e.page_type, 'product_id', p.product_id)
         WHEN 'search' THEN jsonb_build_object('search_id', e.n, 'session_id', e.session_id,
              'customer_id', c.customer_id, 'query', e.search, 'results_count', e.qty * 17 %% 250)
         WHEN 'cart_event' THEN jsonb_build_object('cart_event_id', e.n, 'session_id', e.session_id,
              'customer_id', c.customer_id, 'product_id', p.product_id, 'action', e.action, 'quantity', e.qty,
              'unit_price', p.price::text, 'amount', (p.price * e.qty)::text)
         WHEN 'transaction' THEN jsonb_build_object('transaction_id', e.n, 'session_id', e.session_id,
              'customer_id', c.customer_id, 'total_amount', e.total::text, 'payment_method', e.payment,
              'status', 'paid')
         ELSE jsonb_build_object('transaction_item_id', e.n, 'transaction_id', e.n - 1,
              'product_id', p.product_id, 'quantity', e.qty, 'unit_price', p.price::text,
              'amount', (p.price * e.qty)::text)
       END,
       e.ts + make_interval(secs => 0.05 + e.r_amount),
       e.source_table || ':' || e.n, e.n
FROM (
    SELECT s.*,
           CASE WHEN event_type <> 'transaction_item' THEN 'sess_' || session_no END AS session_id,
           CASE event_type WHEN 'user_behavior' THEN 'page_views' WHEN 'search' THEN 'searches'
                           WHEN 'cart_event' THEN 'cart_events' WHEN 'transaction' THEN 'transactions'
                           ELSE 'transaction_items' END AS source_table,
           CASE WHEN event_type <> 'user_behavior' THEN NULL WHEN r_page < 0.35 THEN 'product'
                WHEN r_page < 0.75 THEN 'home' ELSE 'category' END AS page_type,
           event_type IN ('cart_event', 'transaction_item') OR (event_type = 'user_behavior' AND r_page < 0.35)
               AS has_product,
           1 + floor(power(r_qty, 4) * 5)::int AS qty,
           round((9.99 + 600 * power(r_amount, 2.2))::numeric, 2) AS total,
           CASE WHEN r_qty < 0.85 THEN 'add' ELSE 'remove' END AS action,
           (ARRAY['credit_card', 'debit_card', 'paypal', 'apple_pay', 'bank_transfer'])[1 + n %% 5] AS payment,
           (ARRAY['running shoes', 'coffee maker', 'laptop', 'yoga mat', 'face serum', 'board game',
                  'olive oil', 'cookbook', 'hoodie', 'desk lamp'])[1 + n %% 10] AS search
    FROM (
        SELECT %(first_n)s + g AS n,
               (%(first_n)s + g) / {EVENTS_PER_SESSION} AS session_no,
               %(day)s::timestamp + (g + random()) * %(step)s * interval '1 second' AS ts,
               CASE WHEN r_type < 0.58 THEN 'user_behavior' WHEN r_type < 0.70 THEN 'search'
                    WHEN r_type < 0.85 THEN 'cart_event' WHEN r_type < 0.90 THEN 'transaction'
                    ELSE 'transaction_item' END AS event_type,
               r_page, r_product, r_qty, r_amount
        FROM (SELECT g, random() AS r_type, random() AS r_page, random() AS r_product, random() AS r_qty,
                     random() AS r_amount
              FROM generate_series(0, %(count)s - 1) AS g) r
        OFFSET 0  -- a fence: compute each row's event_type once, not once per use
    ) s
    OFFSET 0
) e
LEFT JOIN dim_customers c
       ON e.event_type <> 'transaction_item' AND c.customer_id = {_CUSTOMER_OF.format(session="e.session_no")}
LEFT JOIN dim_products p
       ON e.has_product AND p.product_id = 1 + floor(%(products)s * power(e.r_product, 2.5))::int
"""

# The sessions that start on that day (the first of their events falls in it); outcome mix as the
# generator's: 20 % conversion, 35 % cart abandonment, 45 % bounce.
_DAY_SESSIONS = f"""
INSERT INTO customer_sessions (session_id, customer_id, session_data, outcome, "timestamp", source_lsn)
SELECT 'sess_' || session_no, {_CUSTOMER_OF.format(session="session_no")},
       jsonb_build_object('start_time', to_char(started, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                          'end_time', to_char(started + duration, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                          'device', device, 'duration', extract(epoch FROM duration)),
       outcome, started + duration, session_no
FROM (
    SELECT session_no,
           %(day)s::timestamp + (session_no * {EVENTS_PER_SESSION} - %(first_n)s) * %(step)s * interval '1 second'
               AS started,
           make_interval(secs => 15 + 1800 * power(random(), 2)) AS duration,
           (ARRAY['mobile', 'desktop', 'tablet'])[1 + session_no %% 3] AS device,
           CASE WHEN r < 0.20 THEN 'conversion' WHEN r < 0.55 THEN 'cart_abandonment' ELSE 'bounce' END AS outcome
    FROM (SELECT session_no, random() AS r
          FROM generate_series(ceil(%(first_n)s / {EVENTS_PER_SESSION}.0)::bigint,
                               (%(first_n)s + %(count)s - 1) / {EVENTS_PER_SESSION}) AS session_no) s
) x
"""


@dataclass(frozen=True)
class Layout:
    """What the scratch warehouse holds: rows spread evenly over the days before `last_day`."""

    rows: int
    days: int
    last_day: date

    @property
    def first_day(self) -> date:
        return self.last_day - timedelta(days=self.days - 1)

    def chunks(self) -> Iterator[tuple[date, int, int]]:
        """(day, index of its first event, its event count)."""
        base, extra = divmod(self.rows, self.days)
        first_n = 0
        for n in range(self.days):
            count = base + (1 if n < extra else 0)
            yield self.first_day + timedelta(days=n), first_n, count
            first_n += count

    def last_week(self) -> tuple[date, date]:
        return self.last_day - timedelta(days=6), self.last_day


def _admin(settings: Settings, autocommit: bool = False):
    conn = psycopg2.connect(settings.dwh_admin(BENCH_DB))
    conn.autocommit = autocommit
    return conn


def stored_layout(settings: Settings) -> Layout | None:
    """The layout of a completed earlier load, if the database has one."""
    with closing(psycopg2.connect(settings.dwh_admin("postgres"))) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
        if not cur.fetchone():
            return None
    with closing(_admin(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('querybench_meta') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT rows, days, last_day FROM querybench_meta")
        row = cur.fetchone()
        # UNLOGGED tables come back empty after a crash of the cluster: then fill again.
        cur.execute(f"SELECT EXISTS (SELECT FROM realtime_events) AND EXISTS (SELECT FROM {FLAT}.realtime_events)")
        intact = cur.fetchone()[0]
    return Layout(*row) if row and intact else None


def build(settings: Settings, layout: Layout) -> dict[str, float]:
    """Create, migrate and fill the scratch warehouse; returns the seconds each stage took.

    Three stages run at once, each day as soon as it can: two loaders fill the partitions day by day;
    the unpartitioned copy and the rollups follow them, day by day, on connections of their own.
    """
    started = time.perf_counter()
    fresh_database(settings)
    with closing(_admin(settings)) as conn:
        fill_dimensions(conn)
        ddl = index_ddl(conn)
    gate = DayGate([day for day, _, _ in layout.chunks()])
    with progress_bar() as progress, ThreadPoolExecutor(3) as pool:
        stages = {
            "partitions_s": pool.submit(_timed, fill_partitions, settings, layout, ddl, gate, progress),
            "unpartitioned_copy_s": pool.submit(_timed, copy_unpartitioned, settings, layout, ddl, gate, progress),
            "rollups_s": pool.submit(_timed, build_rollups, settings, layout, gate, progress),
        }
        timings = {name: future.result() for name, future in stages.items()}
    with closing(_admin(settings)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE querybench_meta AS SELECT %s::bigint AS rows, %s::int AS days, %s::date AS last_day",
            (layout.rows, layout.days, layout.last_day),
        )
    timings["total_s"] = round(time.perf_counter() - started, 1)
    return timings


class DayGate:
    """Which days are loaded: the copy and the rollups wait here for the loaders, day by day."""

    def __init__(self, days: list[date]) -> None:
        self.loaded = {day: threading.Event() for day in days}
        self.failed = threading.Event()

    def open(self, day: date) -> None:
        self.loaded[day].set()

    def wait(self, day: date) -> None:
        while not self.loaded[day].wait(0.5):
            if self.failed.is_set():
                raise RuntimeError("loading the partitions failed (see the other error)")


def fresh_database(settings: Settings) -> None:
    with closing(psycopg2.connect(settings.dwh_admin("postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    migrations.migrate(settings, (migrations.Target("dwh", BENCH_DB, "postgres", "dwh"),))
    with closing(_admin(settings)) as conn:
        today = datetime.now(UTC).date()  # today and a week ahead, as `make up` and the maintenance DAG keep it
        partitions.ensure_daily_partitions(conn, today, today + timedelta(days=7))
        with conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")  # what cold runs found cached
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(FLAT)))
            cur.execute(f"GRANT USAGE ON SCHEMA {FLAT} TO dwh_readonly")


def fill_dimensions(conn) -> None:
    """The generator's own customers and products (names, categories, prices with cents)."""
    rng = random.Random(7)
    customers = [(n, *astuple(customer_row(rng, n))) for n in range(1, CUSTOMERS + 1)]
    products = [(n, *astuple(product_row(rng))) for n in range(1, PRODUCTS + 1)]
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO dim_customers (customer_id, name, email, country, source_lsn) VALUES %s",
            customers,
            template="(%s, %s, %s, %s, 0)",
            page_size=5000,
        )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO dim_products (product_id, name, category, price, source_lsn) VALUES %s",
            products,
            template="(%s, %s, %s, %s, 0)",
            page_size=5000,
        )


def index_ddl(conn) -> list[str]:
    """The parent's keys and indexes as DDL for any table `{table}` (a loaded partition, the copy)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'realtime_events'::regclass AND contype IN ('p', 'u') ORDER BY conname"
        )
        keys = [f"ALTER TABLE {{table}} ADD {definition}" for (definition,) in cur.fetchall()]
        cur.execute(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = 'realtime_events'::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1"
        )
        indexes = [re.sub(r"^CREATE INDEX \S+ ON ONLY \S+ ", "CREATE INDEX ON {table} ", d) for (d,) in cur.fetchall()]
    return keys + indexes


def fill_partitions(settings: Settings, layout: Layout, ddl: list[str], gate: DayGate, progress: Progress) -> None:
    """Each day's partition filled as a plain table, indexed by sort, attached and vacuumed: the bulk-load path."""
    task = progress.add_task("partitions: events, sessions", total=layout.rows)

    def load(conn, day: date, first_n: int, count: int) -> None:
        name = partitions.partition_name(day)
        params = {"day": day, "first_n": first_n, "count": count, "step": 86400 / count}
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    f"CREATE UNLOGGED TABLE {name} (LIKE realtime_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                    "WITH (autovacuum_enabled = false)"  # our VACUUM and ANALYZE follow
                )
                cur.execute(
                    _DAY_EVENTS.replace("{table}", name), {**params, "customers": CUSTOMERS, "products": PRODUCTS}
                )
                cur.execute(_DAY_SESSIONS, {**params, "customers": CUSTOMERS})
                for statement in ddl:
                    cur.execute(statement.replace("{table}", name))
            with conn, conn.cursor() as cur:  # the matching indexes exist: attaching only checks the range
                cur.execute(
                    f"ALTER TABLE realtime_events ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
                    (day, day + timedelta(days=1)),
                )
            _vacuum(conn, name)  # the visibility map: index-only scans, as in a settled warehouse
        except BaseException:
            gate.failed.set()
            raise
        gate.open(day)
        progress.advance(task, count)

    _on_two_connections(settings, load, list(layout.chunks()))
    analyze = progress.add_task("partitions: ANALYZE", total=1)
    with closing(_admin(settings, autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("ANALYZE realtime_events")  # the parent's statistics, and each partition's
        for name in partitions.partition_names(conn):
            cur.execute(f"ALTER TABLE {name} RESET (autovacuum_enabled)")
    progress.advance(analyze)


def copy_unpartitioned(settings: Settings, layout: Layout, ddl: list[str], gate: DayGate, progress: Progress) -> None:
    """flat.realtime_events: the same rows in time order (as a consumer appends them), keys and indexes."""
    task = progress.add_task("unpartitioned copy", total=layout.rows)
    with closing(_admin(settings)) as conn:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"CREATE UNLOGGED TABLE {FLAT}.realtime_events (LIKE public.realtime_events INCLUDING DEFAULTS "
                "INCLUDING CONSTRAINTS) WITH (autovacuum_enabled = false)"
            )
            cur.execute(f"GRANT SELECT ON {FLAT}.realtime_events TO dwh_readonly")
        for day, _, count in layout.chunks():
            gate.wait(day)
            with conn, conn.cursor() as cur:
                cur.execute(f"INSERT INTO {FLAT}.realtime_events SELECT * FROM {partitions.partition_name(day)}")
            progress.advance(task, count)
    indexes = progress.add_task("unpartitioned: keys, indexes", total=len(ddl) + 1)

    def create(conn, statement: str) -> None:  # by sort after the load: faster than row by row
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
            cur.execute(statement.replace("{table}", f"{FLAT}.realtime_events"))
        progress.advance(indexes)

    _on_two_connections(settings, create, [(statement,) for statement in ddl])
    with closing(_admin(settings)) as conn:
        _vacuum(conn, f"{FLAT}.realtime_events", analyze=True)
        with conn, conn.cursor() as cur:
            cur.execute(f"ALTER TABLE {FLAT}.realtime_events RESET (autovacuum_enabled)")
    progress.advance(indexes)


def build_rollups(settings: Settings, layout: Layout, gate: DayGate, progress: Progress) -> None:
    """The rollups of every day (and today: sessions started late yesterday end today), as the DAG would."""
    days = [day for day, _, _ in layout.chunks()]
    task = progress.add_task("rollups", total=len(days) + 1)
    with closing(_admin(settings)) as conn:
        for day in [*days, layout.last_day + timedelta(days=1)]:
            if day in gate.loaded:
                gate.wait(day)  # (and its sessions: those of the day before were loaded before it)
            rollups.refresh_day(conn, day)
            progress.advance(task)
        rollups.prune_before_oldest_source_row(conn)
        rollups.refresh_customer_totals(conn)
        tables = ", ".join([*rollups.TABLES, "customer_totals", "customer_sessions", "dim_customers", "dim_products"])
        _vacuum(conn, tables, analyze=True)


def _vacuum(conn, tables: str, analyze: bool = False) -> None:
    conn.autocommit = True  # VACUUM runs outside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(f"VACUUM {'(ANALYZE) ' if analyze else ''}{tables}")
    finally:
        conn.autocommit = False


def _on_two_connections(settings: Settings, work, items: list[tuple]) -> None:
    """Run work(conn, *item) for every item, in order, on two connections (the machine's two cores)."""
    pending = iter(items)
    lock = threading.Lock()

    def worker() -> None:
        with closing(_admin(settings)) as conn:
            while True:
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                work(conn, *item)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(worker) for _ in range(2)]:
            future.result()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _timed(action, *args) -> float:
    started = time.perf_counter()
    action(*args)
    return round(time.perf_counter() - started, 1)
