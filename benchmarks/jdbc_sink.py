"""The peer: Debezium's JDBC sink connector, on our Kafka Connect worker, draining the same CDC topics.

It is what a team would run instead of our consumer, and it does less: each topic becomes a table
of its own (`sessions`, `page_views`, … in the scratch database `dwh_jdbcbench`), one row per
source primary key, upserted. It cannot reshape the rows into `realtime_events` /
`customer_sessions`, enrich them with dimension names, derive session outcomes, guard against
replays by LSN, or dead-letter a bad message. So it writes simpler rows than we do: an honest
upper bound for the alternative.

Its fastest sensible configuration here (`sink_config`):
- Debezium envelopes consumed natively (the sink reads `after`, applies `op`): no
  ExtractNewRecordState transform in the way;
- `insert.mode=upsert` + `primary.key.mode=record_key`: sessions arrive twice (start, end), so a
  plain insert would fail on the second; deletes applied (`delete.enabled`), as ours are;
- `use.reduction.buffer`: changes to one key within a batch collapse to the last one;
- `dialect.postgres.unnest.insert.enabled`: one INSERT … SELECT FROM unnest(arrays) per table and
  batch instead of a JDBC batch of single-row statements (Debezium documents it as the fast path);
- batches as large as our consumer's (20,000 records per poll and per statement);
- `schema.evolution=basic` creates the tables from the record schemas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import psycopg2
from confluent_kafka.admin import AdminClient
from psycopg2 import sql
from rich.console import Console

from benchmarks.drain import Drain, backends_cpu_seconds, process_cpu_seconds, wait_drained
from instashop.capture.connector import ConnectClient
from instashop.devstack.kafka import KafkaConnect
from instashop.settings import Settings

SINK_DB = "dwh_jdbcbench"
BATCH_SIZE = 20_000
STATE_CHECK_INTERVAL = 2.0
T = TypeVar("T")


def sink_config(topic_regex: str, tasks: int, database: str = SINK_DB) -> dict[str, str]:
    """The connector's config; secrets and the port are resolved by the worker (${env:…})."""
    return {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": str(tasks),
        "topics.regex": topic_regex,
        "connection.url": f"jdbc:postgresql://127.0.0.1:${{env:DWH_POSTGRES_PORT}}/{database}",
        # A role of its own: the Connect worker holds no other database password (see devstack/kafka.py).
        "connection.username": "jdbc_sink",
        "connection.password": "${env:JDBC_SINK_PASSWORD}",
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "schema.evolution": "basic",
        "collection.name.format": "${source.table}",
        "use.reduction.buffer": "true",
        "dialect.postgres.unnest.insert.enabled": "true",
        "batch.size": str(BATCH_SIZE),
        "consumer.override.max.poll.records": str(BATCH_SIZE),
        # A poll of 20,000 ~3 KB envelopes needs more than the 1 MiB per partition of the default.
        "consumer.override.max.partition.fetch.bytes": str(8 * 1024 * 1024),
        "consumer.override.auto.offset.reset": "earliest",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "value.converter.replace.null.with.default": "false",
    }


def fresh_sink_database(settings: Settings, database: str = SINK_DB) -> None:
    """An empty scratch database where jdbc_sink may create tables (the sink creates its own)."""
    drop_sink_database(settings, database)
    _admin_execute(settings, "postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    _admin_execute(settings, database, sql.SQL("GRANT CREATE ON SCHEMA public TO jdbc_sink"))


def drop_sink_database(settings: Settings, database: str = SINK_DB) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
    _admin_execute(settings, "postgres", drop)


def table_rows(settings: Settings, tables: list[str], database: str = SINK_DB) -> dict[str, int]:
    """Exact row counts of the sink's tables (0 for one it has not created)."""
    conn = psycopg2.connect(settings.dwh_admin(database))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            existing = {name for (name,) in cur.fetchall()}
            counts = {}
            for table in tables:
                if table in existing:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                    counts[table] = cur.fetchone()[0]
                else:
                    counts[table] = 0
        return counts
    finally:
        conn.close()


def run_sink(
    settings: Settings,
    admin: AdminClient,
    name: str,
    topic_regex: str,
    expected: int,
    tasks: int,
    console: Console,
) -> Drain:
    """Register the sink and time it until its group has committed `expected` records."""
    worker = KafkaConnect(settings).pid()
    if worker is None:
        raise RuntimeError("Kafka Connect is not running: `make up` first")
    connect = ConnectClient(settings)
    connect.register(name, sink_config(topic_regex, tasks))
    return wait_drained(
        admin,
        group_of(name),
        topic_regex,
        expected,
        console,
        f"JDBC sink ({tasks} task{'s' if tasks > 1 else ''})",
        check=_failure_check(connect, name),
        cpu=lambda: process_cpu_seconds(worker) + backends_cpu_seconds(settings, SINK_DB),
        detail=_live_rows(settings),
    )


def remove_sink(settings: Settings, admin: AdminClient, name: str) -> None:
    """Delete the connector, then its consumer group once the tasks have left it."""
    ConnectClient(settings).delete(name)
    for _ in range(20):
        future = admin.delete_consumer_groups([group_of(name)], request_timeout=10)[group_of(name)]
        try:
            future.result()
            return
        except Exception as err:  # the group is not empty yet (tasks stopping) or already gone
            if "GROUP_ID_NOT_FOUND" in str(err):
                return
            time.sleep(0.5)


def group_of(name: str) -> str:
    """Kafka Connect names a sink connector's consumer group `connect-<connector name>`."""
    return f"connect-{name}"


class _Every(Generic[T]):
    """Calls `fn` at most once per `interval` seconds; in between, answers its last result."""

    def __init__(self, fn: Callable[[], T], interval: float, initial: T) -> None:
        self.fn, self.interval, self.last = fn, interval, initial
        self.at = time.monotonic()

    def __call__(self) -> T:
        if time.monotonic() - self.at >= self.interval:
            self.last, self.at = self.fn(), time.monotonic()
        return self.last


def _failure_check(connect: ConnectClient, name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        state = connect.state(name)
        if "FAILED" in (state.connector, *state.tasks):
            return f"connector {name} failed: {(state.trace or '')[:2000]}"
        return None

    return _Every(check, STATE_CHECK_INTERVAL, None)


def _live_rows(settings: Settings) -> Callable[[], str]:
    """Rows written so far for the progress bar, from the statistics collector (cheap, approximate)."""

    def detail() -> str:
        conn = psycopg2.connect(settings.dwh_admin(SINK_DB))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables")
                return f"(~{cur.fetchone()[0]:,} rows written)"
        finally:
            conn.close()

    return _Every(detail, STATE_CHECK_INTERVAL, "")


def _admin_execute(settings: Settings, database: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(settings.dwh_admin(database))
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
