"""The spec's four typical queries on 10M events: partitioned vs unpartitioned, cold and warm, and the rollups.

    .venv/bin/python -m benchmarks.warehouse_queries [--rows 10000000] [--days 90] [--runs 5] [--rebuild] [--cold]

Works on a scratch database `dwh_querybench` on the stack's PostgreSQL, migrated like `dwh` (the live
`dwh` is never touched): --rows events over the --days days before today, made server-side by
generate_series (the generator's customers, products and categories; the spec's event types in a
shop's mix; amounts with cents; ~14 events per session) with their customer_sessions, plus an
unpartitioned copy `flat.realtime_events` with the same columns, keys and indexes, VACUUM ANALYZE,
and the rollups of sql/dwh/006_daily_rollups.sql. The events' tables are UNLOGGED: no WAL makes the
fill quicker and reads are the same (a crash of the cluster empties them: the next run notices and
fills again). The database is kept: a rerun with the same --rows and --days reuses it; --rebuild
fills it again.

Measured as the read-only role (Superset's), each query fetching all its rows as a dashboard does:
- the spec's queries verbatim ("Consultas Típicas" of spec/DWH_ERD.md) on the partitioned table and on
  the unpartitioned copy (the same text under `search_path = flat, public`);
- date-bounded variants (the last 7 days, literal bounds as a dashboard's time filter sends them): their
  plans must read only those 7 daily partitions; the EXPLAIN lines that show it are printed and saved;
- the same questions from the rollups (instashop.rollups.DASHBOARD_QUERIES and RANGE_QUERIES); every
  source must return the spec query's rows (column "same rows as spec").
warm = median of --runs runs after the first (1 run for queries slower than 2 s cold); cold = the first
run, on a new connection, after evicting caches. By default only this database's files are dropped
from the OS page cache (posix_fadvise DONTNEED: the other users of the machine keep theirs) and
PostgreSQL's shared_buffers (1 GB) are NOT emptied - the MB of this database they still held is saved.
--cold restarts PostgreSQL and drops the whole OS page cache before each cold run: truly cold, but it
breaks everyone else's connections; opt in only when the cluster is yours.

Findings on 10M events (2 cores shared, load average ~13): every full-history spec query misses the
500 ms dashboard target on both tables, 15-70x over - it reads every partition, or the whole table,
~2.3 GB that the page cache of a busy machine does not keep. Partitioning cannot help those; it makes
them slower here, because PostgreSQL's JIT compiles the scan of each of the 99 partitions (EXPLAIN
ANALYZE: ~5 s of JIT vs 0.25 s unpartitioned; `jit = off` for the read-only role would remove it). It
helps the date-bounded queries: 7 of 99 partitions read, 2-3x faster than the unpartitioned table's
index scans for the event-type ones, about even for the customers' (aggregating ~700k rows dominates).
So the dashboards read rollups. Trade-off: five small tables (a row per day; per day and customer
active that day, ~560k for 10M events; per day and product sold; per day and session outcome; and
all-time customer totals), refreshed by the dwh_rollups DAG every 15 minutes - two days recomputed,
a few seconds at this volume (timed below) - so dashboards lag the live table by up to 15 minutes,
and a backfill or late replay of older days needs a refresh of its range by hand. In exchange every
question is answered in milliseconds to a few hundred, with exactly the spec query's rows. Prints a
table; writes var/bench/warehouse_queries.json and var/bench/warehouse_queries.png.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import astuple, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2 import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.report import BENCH_DIR, bar_chart, save_results
from instashop.devstack import manager
from instashop.devstack.generator.catalog import customer_row, product_row
from instashop.settings import Settings, load_settings
from instashop.warehouse import migrations, partitions, rollups
from instashop.warehouse.backfill import DayRange
from instashop.warehouse.spec_queries import SPEC_QUERIES

BENCH_DB = "dwh_querybench"
FLAT = "flat"  # schema of the unpartitioned copy
CUSTOMERS, PRODUCTS = 20_000, 2_000
EVENTS_PER_SESSION = 14
TARGET_MS = 500
SLOW_MS = 2000  # a query slower than this cold gets 1 warm run
console = Console(width=None if sys.stdout.isatty() else 140)  # a log file gets the whole table

# --- the queries ------------------------------------------------------------------------------

# The spec's "Consultas Típicas" without their trailing spaces, so the bounded variants below can
# edit them line by line.
SPEC = {name: "\n".join(line.rstrip() for line in query.split("\n")) for name, query in SPEC_QUERIES.items()}

# The same with a time filter, as a dashboard sends it: literal bounds, so the planner prunes.
_BOUNDS = '"timestamp" >= %(start)s AND "timestamp" < %(end)s'
BOUNDED = {
    "transacciones": SPEC["transacciones"].replace(
        "WHERE event_type = 'transaction'\n", f"WHERE event_type = 'transaction' AND {_BOUNDS}\n"
    ),
    "clientes": SPEC["clientes"].replace(
        "WHERE customer_id IS NOT NULL\n", f"WHERE customer_id IS NOT NULL AND {_BOUNDS}\n"
    ),
    "productos": SPEC["productos"].replace(
        "WHERE event_type = 'transaction_item'\n", f"WHERE event_type = 'transaction_item' AND {_BOUNDS}\n"
    ),
    "sesiones": SPEC["sesiones"].replace("FROM customer_sessions\n", f"FROM customer_sessions\nWHERE {_BOUNDS}\n"),
}


@dataclass(frozen=True)
class Query:
    label: str
    sql: str
    on_events: bool  # reads realtime_events: also run on the unpartitioned copy
    bounded: bool = False
    rollup: bool = False


def queries() -> list[Query]:
    out = []
    for name in SPEC:
        events = name != "sesiones"
        out.append(Query(name, SPEC[name], events))
        out.append(Query(f"{name} 7d", BOUNDED[name], events, bounded=True))
        out.append(Query(f"{name} rollup", rollups.DASHBOARD_QUERIES[name], False, rollup=True))
        out.append(Query(f"{name} rollup 7d", rollups.RANGE_QUERIES[name], False, True, True))
    return out


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
    conn = psycopg2.connect(settings.admin_dsn(BENCH_DB))
    conn.autocommit = autocommit
    return conn


def stored_layout(settings: Settings) -> Layout | None:
    """The layout of a completed earlier load, if the database has one."""
    with closing(psycopg2.connect(settings.admin_dsn("postgres"))) as conn, conn.cursor() as cur:
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
    with _progress() as progress, ThreadPoolExecutor(3) as pool:
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
    with closing(psycopg2.connect(settings.admin_dsn("postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    migrations.migrate(settings, (migrations.Target("dwh", BENCH_DB, "postgres"),))
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


def _progress() -> Progress:
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


# --- cold caches ------------------------------------------------------------------------------


@dataclass
class Cache:
    """How a cold run is made cold (see the module docstring)."""

    settings: Settings
    restart: bool
    drop_caches_permitted: bool | None = None
    database_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        with closing(_admin(self.settings)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT current_setting('data_directory'), oid FROM pg_database WHERE datname = %s", (BENCH_DB,)
            )
            data_dir, oid = cur.fetchone()
        self.database_dir = Path(data_dir) / "base" / str(oid)

    def describe(self) -> str:
        if self.restart:
            os_cache = (
                "whole OS page cache dropped"
                if self.drop_caches_permitted
                else ("OS page cache NOT dropped (drop_caches not permitted here): data may come from RAM")
            )
            return f"first run after a PostgreSQL restart (empty shared_buffers); {os_cache}"
        return (
            "first run on a new connection after dropping this database's files from the OS page cache; "
            "shared_buffers NOT emptied (no restart without --cold)"
        )

    def evict(self) -> None:
        if self.restart:
            manager.down(self.settings, ["postgres"])
            self.drop_caches_permitted = _drop_os_caches()
            manager.up(self.settings, ["postgres"])
        else:
            _evict_files(self.database_dir)

    def shared_buffers_mb(self) -> float:
        """How much of this database PostgreSQL still holds in shared_buffers."""
        with closing(_admin(self.settings)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) * current_setting('block_size')::int / 1048576.0 FROM pg_buffercache "
                "WHERE reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return round(float(cur.fetchone()[0]), 1)


def _evict_files(directory: Path) -> None:
    """Drop this database's files from the OS page cache (only them; needs read access: root)."""
    for path in directory.iterdir():
        if not path.is_file():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _drop_os_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


# --- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    search_path: str


PARTITIONED = Target("partitioned", "public")
UNPARTITIONED = Target("unpartitioned", f"{FLAT}, public")


def connect(settings: Settings, target: Target):
    dsn = psycopg2.extensions.make_dsn(settings.dwh_readonly_dsn, dbname=BENCH_DB)
    conn = psycopg2.connect(dsn, options=f"-c search_path={target.search_path.replace(' ', '')}")
    conn.autocommit = True
    return conn


def run_once(cur, query: Query, params: dict[str, Any]) -> tuple[float, list[tuple]]:
    """Milliseconds to execute and fetch every row (what a dashboard waits for), and the rows."""
    started = time.perf_counter()
    cur.execute(query.sql, params)
    rows = cur.fetchall()
    return (time.perf_counter() - started) * 1000, rows


def measure(
    settings: Settings, cache: Cache, query: Query, target: Target, params: dict, runs: int
) -> tuple[dict[str, Any], Counter]:
    """Cold and warm times, the plan's partitions, and the answer (to check that all sources agree)."""
    cache.evict()
    cached_mb = cache.shared_buffers_mb()
    with closing(connect(settings, target)) as conn, conn.cursor() as cur:
        cold_ms, rows = run_once(cur, query, params)
        runs = runs if cold_ms < SLOW_MS else 1  # a scan of seconds: more runs would only make the rerun long
        warm = [run_once(cur, query, params)[0] for _ in range(runs)]
        plan = explain(cur, query, params)
    result = {
        "cold_ms": round(cold_ms, 1),
        "warm_ms": round(statistics.median(warm), 1),
        "warm_runs_ms": [round(ms, 1) for ms in warm],
        "rows": len(rows),
        "shared_buffers_mb_before_cold": cached_mb,
        **plan,
    }
    return result, Counter(rows)


def explain(cur, query: Query, params: dict) -> dict[str, Any]:
    """The partitions of realtime_events the plan reads, and its scan lines that show it."""
    cur.execute("EXPLAIN (FORMAT JSON) " + query.sql, params)
    relations = _relations(cur.fetchone()[0][0]["Plan"])
    cur.execute("EXPLAIN (COSTS OFF) " + query.sql, params)
    lines = [line for (line,) in cur.fetchall()]
    scans = [
        line.strip().removeprefix("-> ").strip()
        for line in lines
        if ("Scan on " in line and "Bitmap Index Scan" not in line) or "Subplans Removed" in line
    ]
    scanned = sorted(name for name in relations if name.startswith("realtime_events_"))
    return {"plan": lines, "scan_lines": scans, "partitions_scanned": scanned}


def _relations(node: dict) -> set[str]:
    names = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", []):
        names |= _relations(child)
    return names


def run_all(settings: Settings, layout: Layout, cache: Cache, runs: int) -> list[dict[str, Any]]:
    first, last = layout.last_week()
    params = {
        "start": datetime.combine(first, datetime.min.time()),
        "end": datetime.combine(last + timedelta(days=1), datetime.min.time()),
        "first": first,
        "last": last,
    }
    work = [(q, t) for q in queries() for t in ([PARTITIONED, UNPARTITIONED] if q.on_events else [PARTITIONED])]
    results: dict[str, dict[str, Any]] = {}
    answers: dict[tuple[str, str], Counter] = {}
    with _progress() as progress:
        task = progress.add_task("queries", total=len(work))
        for query, target in work:
            progress.update(task, description=f"{query.label} ({target.name})")
            entry = results.setdefault(query.label, {"query": query.label, "sql": query.sql})
            entry["kind"] = "rollup" if query.rollup else ("spec, last 7 days" if query.bounded else "spec")
            entry[target.name], answers[query.label, target.name] = measure(
                settings, cache, query, target, params, runs
            )
            progress.advance(task)
    for entry in results.values():
        entry["same_answer_as_spec"] = _same_answer(entry["query"], answers)
    return list(results.values())


def _same_answer(label: str, answers: dict[tuple[str, str], Counter]) -> bool:
    """Every source of a question (partitioned, unpartitioned, rollup) gives the spec query's rows."""
    spec_label = label.replace(" rollup", "")
    expected = answers[spec_label, PARTITIONED.name]
    return all(answer == expected for (other, _), answer in answers.items() if other == label)


def time_scheduled_refresh(settings: Settings, layout: Layout) -> float:
    """What each dwh_rollups run does at this volume: recompute two days (yesterday and today)."""
    with closing(_admin(settings)) as conn:
        started = time.perf_counter()
        rollups.refresh(conn, DayRange(layout.last_day - timedelta(days=1), layout.last_day))
        return round(time.perf_counter() - started, 2)


def partition_count(settings: Settings) -> int:
    with closing(_admin(settings)) as conn:
        return len(partitions.partition_names(conn))


# --- report -----------------------------------------------------------------------------------


def print_table(results: list[dict], rows: int, total_partitions: int, cold: str) -> None:
    table = Table(
        "query",
        "partitioned\nwarm ms",
        "partitioned\ncold ms",
        "unpartitioned\nwarm ms",
        "unpartitioned\ncold ms",
        "unpart. /\npart. warm",
        "partitions\nread",
        f"warm\n< {TARGET_MS} ms",
        "same rows\nas spec",
        title=f"Spec queries on {rows:,} events (warm = median of the runs after the first; rollup rows: the rollup's)",
        caption=f"cold = {cold}",
    )
    for entry in results:
        part, flat = entry["partitioned"], entry.get("unpartitioned")
        scanned = (
            "rollup"
            if entry["kind"] == "rollup"
            else (f"{len(part['partitions_scanned'])} of {total_partitions}" if flat else "not partitioned")
        )
        table.add_row(
            entry["query"],
            f"{part['warm_ms']:,.1f}",
            f"{part['cold_ms']:,.1f}",
            f"{flat['warm_ms']:,.1f}" if flat else "—",
            f"{flat['cold_ms']:,.1f}" if flat else "—",
            f"{flat['warm_ms'] / part['warm_ms']:.2f}x" if flat else "—",
            scanned,
            "[green]✓[/]" if part["warm_ms"] < TARGET_MS else "[red]✗[/]",
            "yes" if entry["same_answer_as_spec"] else "[red]NO[/]",
        )
    console.print(table)


def print_pruning(results: list[dict]) -> None:
    for entry in results:
        if entry["kind"] == "spec, last 7 days" and entry["partitioned"]["partitions_scanned"]:
            console.print(f"[bold]{entry['query']}[/] (partitioned) scans:")
            for line in entry["partitioned"]["scan_lines"]:
                console.print(f"   {line}", highlight=False)


def chart(results: list[dict], rows: int) -> Path:
    def values(target: str, key: str) -> list[float | None]:
        return [entry[target][key] if target in entry else None for entry in results]

    return bar_chart(
        BENCH_DIR / "warehouse_queries.png",
        f"Spec queries on {rows:,} events: partitioned vs unpartitioned vs rollups (ms, log scale)",
        [entry["query"] for entry in results],
        {
            "partitioned / rollup, warm": values("partitioned", "warm_ms"),
            "partitioned / rollup, cold": values("partitioned", "cold_ms"),
            "unpartitioned, warm": values("unpartitioned", "warm_ms"),
            "unpartitioned, cold": values("unpartitioned", "cold_ms"),
        },
        threshold=TARGET_MS,
        log_scale=True,
    )


# --- main -------------------------------------------------------------------------------------


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """migrations and partitions log every step at INFO; the progress bars say enough."""
    import logging

    previous = logging.root.level
    logging.basicConfig(level=logging.WARNING)
    try:
        yield
    finally:
        logging.root.setLevel(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="events to load (default 10000000)")
    parser.add_argument("--days", type=int, default=90, help="days they span, ending yesterday (default 90)")
    parser.add_argument("--runs", type=int, default=5, help="warm runs per query; the median counts (default 5)")
    parser.add_argument("--rebuild", action="store_true", help="fill the scratch database again")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="restart PostgreSQL and drop the OS page cache before each cold run (breaks everyone else's connections)",
    )
    args = parser.parse_args()
    if args.rows < 100_000 or not 7 <= args.days <= 366 or args.runs < 1:
        parser.error("--rows must be at least 100000, --days 7..366, --runs at least 1")
    settings = load_settings()
    with _quiet_logs():
        layout = stored_layout(settings)
        wanted = (args.rows, args.days)
        build_timings = None
        if args.rebuild or layout is None or (layout.rows, layout.days) != wanted:
            layout = Layout(args.rows, args.days, datetime.now(UTC).date() - timedelta(days=1))
            console.print(f"filling {BENCH_DB}: {layout.rows:,} events over {layout.first_day}..{layout.last_day}")
            build_timings = build(settings, layout)
        else:
            console.print(f"reusing {BENCH_DB}: {layout.rows:,} events over {layout.first_day}..{layout.last_day}")
        cache = Cache(settings, restart=args.cold)
        load_before = os.getloadavg()[0]
        results = run_all(settings, layout, cache, args.runs)
        refresh_s = time_scheduled_refresh(settings, layout)
        load = {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()}
    total = partition_count(settings)
    print_table(results, layout.rows, total, cache.describe())
    print_pruning(results)
    console.print(f"rollup refresh of two days (one dwh_rollups run): {refresh_s:.2f} s")
    console.print(
        f"machine load (1-min average) {load['before']:.1f} before, {load['after']:.1f} after, on {load['cores']} "
        "cores: the machine is shared, numbers above 1 per core mean queries waited for CPU"
    )
    saved = save_results(
        "warehouse_queries",
        {
            "database": BENCH_DB,
            "rows": layout.rows,
            "days": f"{layout.first_day}..{layout.last_day}",
            "partitions": total,
            "warm_runs": args.runs,
            "cold": cache.describe(),
            "target_ms": TARGET_MS,
            "build_s": build_timings,
            "rollup_refresh_two_days_s": refresh_s,
            "load_average_1min": load,
            "queries": results,
        },
    )
    console.print(f"saved {saved} and {chart(results, layout.rows)}")


if __name__ == "__main__":
    main()
