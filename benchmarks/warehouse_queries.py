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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table

from benchmarks.report import BENCH_DIR, bar_chart, save_results
from benchmarks.warehouse_queries_data import BENCH_DB, Layout, build, console, stored_layout
from benchmarks.warehouse_queries_timing import Cache, partition_count, run_all, time_scheduled_refresh
from instashop.settings import Settings, load_settings

TARGET_MS = 500

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


def _parse_args() -> argparse.Namespace:
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
    return args


def _database(settings: Settings, args: argparse.Namespace) -> tuple[Layout, dict[str, float] | None]:
    """The scratch database as asked for: reused when it holds --rows over --days, else filled again
    (then also the build's timings)."""
    layout = stored_layout(settings)
    if not args.rebuild and layout is not None and (layout.rows, layout.days) == (args.rows, args.days):
        console.print(f"reusing {BENCH_DB}: {layout.rows:,} events over {layout.first_day}..{layout.last_day}")
        return layout, None
    layout = Layout(args.rows, args.days, datetime.now(UTC).date() - timedelta(days=1))
    console.print(f"filling {BENCH_DB}: {layout.rows:,} events over {layout.first_day}..{layout.last_day}")
    return layout, build(settings, layout)


def main() -> None:
    args = _parse_args()
    settings = load_settings()
    with _quiet_logs():
        layout, build_timings = _database(settings, args)
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
