"""What benchmarks.warehouse_queries times and how: the queries, cold caches, runs as the read-only role
and the EXPLAIN that shows partition pruning.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

from benchmarks.warehouse_queries_data import BENCH_DB, FLAT, Layout, _admin, progress_bar
from instashop.devstack import manager
from instashop.settings import Settings
from instashop.warehouse import partitions, rollups
from instashop.warehouse.day_ranges import DayRange
from instashop.warehouse.spec_queries import SPEC_QUERIES

SLOW_MS = 2000  # a query slower than this cold gets 1 warm run

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
            manager.down(self.settings, ["postgres-dwh"])
            self.drop_caches_permitted = _drop_os_caches()
            manager.up(self.settings, ["postgres-dwh"])
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
    with progress_bar() as progress:
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
