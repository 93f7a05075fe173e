"""DWH ingest throughput: our consumer side by side with Debezium's JDBC sink, COPY and a naive loop.

    .venv/bin/python -m benchmarks.consumer_throughput [--events 1000000] [--sink-tasks 2]

Pre-fills scratch topics `bench-<run>.public.<table>` with Debezium change events of realistic shop
sessions, as JsonConverter writes them with schemas (`benchmarks/cdc_events.py`), then, from those
very topics, times:
  1. our consumer (decode, map, COPY into the partitioned realtime_events with names from the
     dimensions, sessions merged and refreshed, offset commits) into a scratch warehouse database
     `dwh_bench` migrated like `dwh`;
  2. the peer, Debezium's JDBC sink connector on our Kafka Connect worker, in its fastest sensible
     configuration (`benchmarks/jdbc_sink.py`). It only upserts each topic into a table of its own
     in the scratch database `dwh_jdbcbench`: no reshaping into realtime_events/customer_sessions,
     no enrichment, no LSN guard, no dead letters — less work than ours, so a generous peer;
  3. the ceiling: PostgreSQL COPY of the very rows our consumer wrote back into the emptied
     realtime_events (the median of three);
  4. the baseline of the spec's original prototype: one INSERT and COMMIT per row (a sample).
Consumer and sink are timed alike (`benchmarks/drain.py`): CDC records consumed, written and their
offsets committed, read from Kafka's admin API, from the first commit seen to the last; and by the
CPU seconds they used (their process plus their PostgreSQL backends), which other jobs on a shared
machine hardly move. Both are checked to have written every row.

Prints a table, writes var/bench/consumer_throughput.json and var/bench/consumer_throughput.png.
Scratch topics, consumer groups, the sink connector and its database are removed at the end, also
on failure; the live `dwh` and the `instashop-oltp` connector are untouched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2
from confluent_kafka.admin import AdminClient
from psycopg2 import sql
from rich.console import Console
from rich.table import Table

from benchmarks import jdbc_sink
from benchmarks.cdc_events import TABLES, ChangeStream, prefill, topic_names
from benchmarks.drain import Drain, backends_cpu_seconds, process_cpu_seconds, wait_drained
from benchmarks.report import BENCH_DIR, bar_chart, save_results
from instashop import kafka_auth
from instashop.ingest.consumer import ConsumerOptions, DwhConsumer
from instashop.settings import Settings, load_settings
from instashop.warehouse import migrations, partitions

NAME = "consumer_throughput"
BATCH_SIZE = 20000
BENCH_DB = "dwh_bench"
GOAL_VS_SINK = 5.0  # issue 7: our consumer at least 5x the JDBC sink
GOAL_VS_COPY = 0.5  # ... and at least half the COPY ceiling
COPY_RUNS = 3
console = Console()


# --- the four measurements --------------------------------------------------------------------


def run_consumer(settings: Settings, admin: AdminClient, prefix: str, pattern: str, expected: int) -> Drain:
    options = ConsumerOptions(
        batch_size=BATCH_SIZE,
        group_id=f"{prefix}-group",
        topic_pattern=pattern,
        dwh_dsn=_bench_dsn(settings.dwh_dsn),
        enriched_items_topic=f"{prefix}.items",
        dead_letters_topic=f"{prefix}.dlq",
    )
    consumer = DwhConsumer(settings, options)
    thread = threading.Thread(target=consumer.run, name="bench-consumer")
    thread.start()
    try:
        return wait_drained(
            admin,
            options.group_id,
            pattern,
            expected,
            console,
            "our consumer",
            check=lambda: None if thread.is_alive() else "the consumer stopped (see its log above)",
            cpu=lambda: process_cpu_seconds(os.getpid()) + backends_cpu_seconds(settings, BENCH_DB),
        )
    finally:
        consumer.stop()
        thread.join()


def copy_ceiling(settings: Settings, runs: int = COPY_RUNS) -> tuple[int, float]:
    """COPY the rows the consumer wrote back into the emptied table: the write path's upper bound.

    One COPY swung 27k-62k rows/s between runs on this VM's disk: the median of a few, each into the
    emptied table after a checkpoint, is the yardstick. Returns the rows and the median seconds.
    """
    conn = psycopg2.connect(_bench_dsn(settings.dwh_admin_dsn))
    buffer = io.StringIO()
    with conn, conn.cursor() as cur:
        cur.copy_expert("COPY (SELECT * FROM realtime_events) TO STDOUT", buffer)
    rows = buffer.getvalue().count("\n")
    seconds = []
    for _ in range(runs):
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE realtime_events")
        checkpoint(settings)
        buffer.seek(0)
        started = time.perf_counter()
        with conn, conn.cursor() as cur:
            cur.copy_expert("COPY realtime_events FROM STDIN", buffer)
        seconds.append(time.perf_counter() - started)
    conn.close()
    console.print(f"COPY of {rows:,} rows: {', '.join(f'{rows / s:,.0f}' for s in seconds)} rows/s")
    return rows, statistics.median(seconds)


def naive_inserts(settings: Settings, rows: int = 3000) -> float:
    """The prototype's loop: one INSERT and one COMMIT per event."""
    conn = psycopg2.connect(_bench_dsn(settings.dwh_dsn))
    now = datetime.now(UTC).replace(tzinfo=None)
    started = time.perf_counter()
    for n in range(rows):
        with conn, conn.cursor() as cur:
            cur.execute(
                'INSERT INTO realtime_events (event_type, "timestamp", customer_id, amount, raw_data, event_key, '
                "source_lsn) VALUES ('transaction', %s, %s, %s, %s, %s, 1)",
                (now, n % 1000, Decimal("9.99"), json.dumps({"n": n}), f"naive:{n}"),
            )
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed


def checkpoint(settings: Settings) -> None:
    """Flush the dirty pages the previous side left, so that no side pays for another's writes.

    Otherwise a checkpoint (every 4 GB of WAL) lands in whichever side runs then: in one run it
    halved the COPY ceiling measured after the sink.
    """
    conn = psycopg2.connect(settings.dwh_admin("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CHECKPOINT")
    conn.close()


# --- checks: every side wrote every row -------------------------------------------------------


def check_consumer_rows(settings: Settings, stream: ChangeStream) -> None:
    """One realtime_events row per non-session source row, one customer_sessions row per session."""
    conn = psycopg2.connect(_bench_dsn(settings.dwh_admin_dsn))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM realtime_events), (SELECT count(*) FROM customer_sessions)")
        events, sessions = cur.fetchone()
    conn.close()
    expected = (sum(stream.rows.values()) - stream.rows["sessions"], stream.rows["sessions"])
    if (events, sessions) != expected:
        raise RuntimeError(f"consumer wrote {events:,} events and {sessions:,} sessions, expected {expected}")


def check_sink_rows(settings: Settings, stream: ChangeStream) -> None:
    counts = jdbc_sink.table_rows(settings, list(TABLES))
    if counts != stream.rows:
        raise RuntimeError(f"JDBC sink wrote {counts}, expected {stream.rows}")


# --- set-up and clean-up ----------------------------------------------------------------------


def fresh_bench_database(settings: Settings) -> None:
    conn = psycopg2.connect(settings.dwh_admin("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    conn.close()
    migrations.migrate(settings, (migrations.Target("dwh", BENCH_DB, "postgres", "dwh"),))
    conn = psycopg2.connect(settings.dwh_admin(BENCH_DB))
    today = datetime.now(UTC).date()
    partitions.ensure_daily_partitions(conn, today - timedelta(days=1), today + timedelta(days=1))
    conn.close()


def clean_up(settings: Settings, admin: AdminClient, prefix: str, sink_name: str) -> None:
    """Remove the sink connector, its database, the scratch topics and consumer groups."""
    jdbc_sink.remove_sink(settings, admin, sink_name)
    jdbc_sink.drop_sink_database(settings)
    existing = admin.list_topics(timeout=10).topics
    scratch = [t for t in [*topic_names(prefix), f"{prefix}.items", f"{prefix}.dlq"] if t in existing]
    for future in (admin.delete_topics(scratch) if scratch else {}).values():
        future.result()
    for future in admin.delete_consumer_groups([f"{prefix}-group"], request_timeout=10).values():
        try:
            future.result()
        except Exception as err:
            console.print(f"[dim]group clean-up: {err}[/dim]")


def _bench_dsn(dsn: str) -> str:
    return psycopg2.extensions.make_dsn(dsn, dbname=BENCH_DB)


# --- report -----------------------------------------------------------------------------------


def summarize(
    stream: ChangeStream, consumer: Drain, sink: Drain, copy: tuple[int, float], naive: float, tasks: int
) -> dict[str, Any]:
    rows, copy_seconds = copy
    results: dict[str, Any] = {"events": stream.events, "rows_per_table": stream.rows}
    for side, drain in (("consumer", consumer), ("jdbc_sink", sink)):
        results[f"{side}_events_per_s"] = round(drain.per_second)
        results[f"{side}_wall_seconds"] = round(drain.wall_seconds, 1)
        results[f"{side}_cpu_seconds"] = round(drain.cpu_seconds, 1)
        results[f"{side}_events_per_cpu_s"] = round(drain.per_cpu_second)
    results |= {
        "jdbc_sink_tasks": tasks,
        "jdbc_sink_config": jdbc_sink.sink_config("<scratch topics>", tasks),
        "copy_rows": rows,
        "copy_rows_per_s": round(rows / copy_seconds),
        "naive_rows_per_s": round(naive),
        "consumer_vs_jdbc_sink": round(consumer.per_second / sink.per_second, 2),
        "consumer_vs_jdbc_sink_per_cpu": round(consumer.per_cpu_second / sink.per_cpu_second, 2),
        "consumer_vs_copy": round(consumer.per_second / (rows / copy_seconds), 3),
        "consumer_vs_naive": round(consumer.per_second / naive, 1),
    }
    return results


def report(results: dict[str, Any]) -> None:
    """The rich table, the JSON and the bar chart."""
    table = Table("side", "throughput", "wall (incl. start-up)", "events per CPU-second", title=_title(results))
    for side, key in (
        ("our consumer", "consumer"),
        (f"Debezium JDBC sink ({results['jdbc_sink_tasks']} tasks)", "jdbc_sink"),
    ):
        table.add_row(
            side,
            f"{results[f'{key}_events_per_s']:,} events/s",
            f"{results[f'{key}_wall_seconds']} s",
            f"{results[f'{key}_events_per_cpu_s']:,} ({results[f'{key}_cpu_seconds']} CPU-s)",
        )
    table.add_row("naive INSERT+COMMIT per row", f"{results['naive_rows_per_s']:,} rows/s", "", "")
    table.add_row(f"COPY ceiling (same rows, median of {COPY_RUNS})", f"{results['copy_rows_per_s']:,} rows/s", "", "")
    table.add_section()
    sink_ratio, copy_ratio = results["consumer_vs_jdbc_sink"], results["consumer_vs_copy"]
    table.add_row(
        "consumer / JDBC sink",
        f"{sink_ratio}x ({_verdict(sink_ratio >= GOAL_VS_SINK, f'goal {GOAL_VS_SINK:g}x')})",
        "",
        f"{results['consumer_vs_jdbc_sink_per_cpu']}x",
    )
    copy_goal = _verdict(copy_ratio >= GOAL_VS_COPY, f"goal {GOAL_VS_COPY:.0%}")
    table.add_row("consumer / COPY", f"{copy_ratio:.0%} ({copy_goal})", "", "")
    table.add_row("consumer / naive", f"{results['consumer_vs_naive']}x", "", "")
    console.print(table)
    json_path = save_results(NAME, results)
    png_path = bar_chart(
        BENCH_DIR / f"{NAME}.png",
        _title(results),
        ["our consumer", "Debezium JDBC sink", "naive INSERT+COMMIT", "COPY ceiling"],
        {
            "events/s (rows/s for naive and COPY)": [
                results["consumer_events_per_s"],
                results["jdbc_sink_events_per_s"],
                results["naive_rows_per_s"],
                results["copy_rows_per_s"],
            ]
        },
        ylabel="per second, log scale",
        log_scale=True,
    )
    console.print(f"saved {json_path} and {png_path}")


def _title(results: dict[str, Any]) -> str:
    return f"DWH ingest throughput, {results['events']:,} CDC events"


def _verdict(met: bool, goal: str) -> str:
    return f"{goal}: {'met' if met else 'NOT met'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="change events to pre-fill (default 1000000)")
    parser.add_argument("--sink-tasks", type=int, default=2, help="tasks of the JDBC sink connector (default 2)")
    args = parser.parse_args()
    if args.events < 50_000:
        parser.error("--events must be at least 50000 (a rate needs several commits)")
    settings = load_settings()
    admin = AdminClient(kafka_auth.client_config(settings, kafka_auth.ADMIN))
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    pattern, sink_name = rf"^{prefix}\.public\..+", f"{prefix}-jdbc-sink"
    # The consumer and the sink run as their own principals: they get the scratch topics for this run.
    scratch = [
        *kafka_auth.scratch_grants(kafka_auth.CONSUMER, prefix, group_prefix=prefix),
        *kafka_auth.scratch_grants(kafka_auth.CONNECT, prefix),
    ]
    kafka_auth.grant(admin, scratch)
    fresh_bench_database(settings)
    jdbc_sink.fresh_sink_database(settings)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    try:
        stream = prefill(kafka_auth.client_config(settings, kafka_auth.ADMIN), prefix, args.events, console)
        prefill_seconds = time.perf_counter() - started
        console.print(f"pre-filled {stream.events:,} change events in {prefill_seconds:.0f} s")
        checkpoint(settings)
        consumer = run_consumer(settings, admin, prefix, pattern, stream.events)
        check_consumer_rows(settings, stream)
        console.print(f"our consumer wrote every row in {consumer.wall_seconds:.0f} s")
        checkpoint(settings)
        sink = jdbc_sink.run_sink(settings, admin, sink_name, pattern, stream.events, args.sink_tasks, console)
        check_sink_rows(settings, stream)
        console.print(f"the JDBC sink wrote every row in {sink.wall_seconds:.0f} s")
        copy = copy_ceiling(settings)
        checkpoint(settings)
        naive = naive_inserts(settings)
    finally:
        clean_up(settings, admin, prefix, sink_name)
        kafka_auth.revoke(admin, scratch)
    results = summarize(stream, consumer, sink, copy, naive, args.sink_tasks)
    # The machine is shared: the 1-minute load around the run tells how noisy the numbers are.
    results["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    results["prefill_seconds"] = round(prefill_seconds, 1)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    report(results)


if __name__ == "__main__":
    main()
