"""DWH ingest throughput: our consumer vs the raw COPY ceiling and a naive per-row loop.

    .venv/bin/python benchmarks/consumer_throughput.py [--events 300000]

Pre-fills scratch topics `bench-<run>.public.<table>` with Debezium-format change events of
realistic shop sessions (same envelope as our connector produces: no schemas, string decimals,
ISO-8601 times), then times, on a scratch warehouse database `dwh_bench` migrated like `dwh`:
  1. our consumer (decode, map, COPY + merge, session refresh, offset commits) draining the topics;
  2. the ceiling: PostgreSQL COPY of the very rows it wrote back into the emptied realtime_events;
  3. the baseline of the spec's original prototype: one INSERT and COMMIT per row (a sample).
Prints a table and writes var/bench/consumer_throughput.json. The live `dwh` is never touched.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg2
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg2 import sql
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from instashop import migrations, partitions
from instashop.config import Settings, load_settings
from instashop.consumer import ConsumerOptions, DwhConsumer

BATCH_SIZE = 20000
BENCH_DB = "dwh_bench"
TABLES = ("sessions", "page_views", "searches", "cart_events", "transactions", "transaction_items")
console = Console()


# --- synthetic CDC ----------------------------------------------------------------------------


class ChangeStream:
    """Debezium envelopes of shop sessions, with increasing LSNs, as our connector emits them."""

    def __init__(self, prefix: str, seed: int = 1) -> None:
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.lsn = 1_000_000
        self.ids: dict[str, int] = {}
        self.now = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)

    def session(self) -> list[tuple[str, bytes, bytes]]:
        rng, messages = self.rng, []
        session_id = f"bench_{uuid.uuid4().hex[:16]}"
        customer = rng.randint(1, 1000)
        start = self.now = self.now + timedelta(milliseconds=rng.randint(1, 50))
        row = {
            "session_id": session_id,
            "customer_id": customer,
            "device": "mobile",
            "started_at": _iso(start),
            "ended_at": None,
        }
        messages.append(self._change("sessions", "session_id", row, "c"))
        for step in range(rng.randint(3, 9)):
            product = rng.randint(1, 200)
            messages.append(
                self._insert(
                    "page_views",
                    "page_view_id",
                    {
                        "session_id": session_id,
                        "customer_id": customer,
                        "page_type": "product",
                        "product_id": product,
                        "viewed_at": _iso(start + timedelta(seconds=step)),
                    },
                )
            )
        messages.append(
            self._insert(
                "searches",
                "search_id",
                {
                    "session_id": session_id,
                    "customer_id": customer,
                    "query": "running shoes",
                    "results_count": 12,
                    "searched_at": _iso(start + timedelta(seconds=10)),
                },
            )
        )
        items = []
        for _ in range(rng.randint(0, 3)):
            price, quantity = Decimal(rng.randint(199, 99999)) / 100, rng.randint(1, 3)
            product = rng.randint(1, 200)
            items.append((product, quantity, price))
            messages.append(
                self._insert(
                    "cart_events",
                    "cart_event_id",
                    {
                        "session_id": session_id,
                        "customer_id": customer,
                        "product_id": product,
                        "action": "add",
                        "quantity": quantity,
                        "unit_price": str(price),
                        "amount": str(price * quantity),
                        "created_at": _iso(start + timedelta(seconds=12)),
                    },
                )
            )
        if items and rng.random() < 0.5:
            total = sum((price * quantity for _, quantity, price in items), Decimal("0"))
            tx_id = self._next("transactions")
            at = _iso(start + timedelta(seconds=20))
            messages.append(
                self._change(
                    "transactions",
                    "transaction_id",
                    {
                        "transaction_id": tx_id,
                        "customer_id": customer,
                        "session_id": session_id,
                        "total_amount": str(total),
                        "payment_method": "card",
                        "status": "pending",
                        "created_at": at,
                        "updated_at": at,
                    },
                    "c",
                )
            )
            for product, quantity, price in items:
                messages.append(
                    self._insert(
                        "transaction_items",
                        "transaction_item_id",
                        {
                            "transaction_id": tx_id,
                            "product_id": product,
                            "quantity": quantity,
                            "unit_price": str(price),
                            "amount": str(price * quantity),
                            "created_at": at,
                        },
                    )
                )
        messages.append(
            self._change("sessions", "session_id", {**row, "ended_at": _iso(start + timedelta(seconds=30))}, "u")
        )
        return messages

    def _insert(self, table: str, pk: str, row: dict) -> tuple[str, bytes, bytes]:
        return self._change(table, pk, {pk: self._next(table), **row}, "c")

    def _next(self, table: str) -> int:
        self.ids[table] = self.ids.get(table, 0) + 1
        return self.ids[table]

    def _change(self, table: str, pk: str, row: dict, op: str) -> tuple[str, bytes, bytes]:
        self.lsn += 88
        source = {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": self.prefix,
            "ts_ms": 0,
            "snapshot": "false",
            "db": "instashop",
            "schema": "public",
            "table": table,
            "txId": 1,
            "lsn": self.lsn,
        }
        value = {"before": None, "after": row, "source": source, "transaction": None, "op": op, "ts_ms": 0}
        return f"{self.prefix}.public.{table}", json.dumps({pk: row[pk]}).encode(), json.dumps(value).encode()


def _iso(at: datetime) -> str:
    return at.isoformat() + "Z"


# --- the three measurements -------------------------------------------------------------------


def prefill(settings: Settings, prefix: str, events: int) -> int:
    admin = AdminClient({"bootstrap.servers": settings["KAFKA_BOOTSTRAP"]})
    futures = admin.create_topics([NewTopic(f"{prefix}.public.{t}", 3, 1) for t in TABLES])
    for future in futures.values():
        future.result()
    producer = Producer(
        {
            "bootstrap.servers": settings["KAFKA_BOOTSTRAP"],
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
        }
    )
    stream, produced = ChangeStream(prefix), 0
    with Progress(console=console) as progress:
        task = progress.add_task("pre-filling topics", total=events)
        while produced < events:
            for topic, key, value in stream.session():
                producer.produce(topic, key=key, value=value)
                produced += 1
            producer.poll(0)
            progress.update(task, completed=produced)
    producer.flush(60)
    return produced


def run_consumer(settings: Settings, prefix: str, expected: int) -> float:
    options = ConsumerOptions(
        batch_size=BATCH_SIZE,
        group_id=f"{prefix}-group",
        topic_pattern=rf"^{prefix}\.public\..+",
        dwh_dsn=_bench_dsn(settings["DWH_DSN"]),
        enriched_items_topic=f"{prefix}.items",
        dead_letters_topic=f"{prefix}.dlq",
    )
    consumer = DwhConsumer(settings, options)
    thread = threading.Thread(target=consumer.run)
    started = time.perf_counter()
    thread.start()
    with Progress(console=console) as progress:
        task = progress.add_task("consumer draining", total=expected)
        while consumer.stats["messages"] < expected and thread.is_alive():
            progress.update(task, completed=consumer.stats["messages"])
            time.sleep(0.2)
        progress.update(task, completed=consumer.stats["messages"])
    elapsed = time.perf_counter() - started
    consumer.stop()
    thread.join()
    if consumer.stats["messages"] < expected:
        raise RuntimeError(f"consumer stopped after {consumer.stats['messages']} of {expected} messages")
    return elapsed


def copy_ceiling(settings: Settings) -> tuple[int, float]:
    """COPY the rows the consumer wrote back into the emptied table: the write path's upper bound."""
    conn = psycopg2.connect(_bench_dsn(settings["POSTGRES_ADMIN_DSN"]))
    buffer = io.StringIO()
    with conn, conn.cursor() as cur:
        cur.copy_expert("COPY (SELECT * FROM realtime_events) TO STDOUT", buffer)
        rows = buffer.getvalue().count("\n")
        cur.execute("TRUNCATE realtime_events")
    buffer.seek(0)
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.copy_expert("COPY realtime_events FROM STDIN", buffer)
    elapsed = time.perf_counter() - started
    conn.close()
    return rows, elapsed


def naive_inserts(settings: Settings, rows: int = 3000) -> float:
    """The prototype's loop: one INSERT and one COMMIT per event."""
    conn = psycopg2.connect(_bench_dsn(settings["DWH_DSN"]))
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


# --- set-up and report ------------------------------------------------------------------------


def fresh_bench_database(settings: Settings) -> None:
    conn = psycopg2.connect(settings.admin_dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    conn.close()
    migrations.migrate(settings, (migrations.Target("dwh", BENCH_DB, "postgres"),))
    conn = psycopg2.connect(settings.admin_dsn(BENCH_DB))
    today = datetime.now(UTC).date()
    partitions.ensure_daily_partitions(conn, today - timedelta(days=1), today + timedelta(days=1))
    conn.close()


def _bench_dsn(dsn: str) -> str:
    return psycopg2.extensions.make_dsn(dsn, dbname=BENCH_DB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000, help="change events to pre-fill (default 300000)")
    args = parser.parse_args()
    if args.events < 1000:
        parser.error("--events must be at least 1000")
    settings = load_settings()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    fresh_bench_database(settings)
    events = prefill(settings, prefix, args.events)
    consumer_seconds = run_consumer(settings, prefix, events)
    rows, copy_seconds = copy_ceiling(settings)
    naive_rate = naive_inserts(settings)
    results = {
        "events": events,
        "rows_written": rows,
        "consumer_events_per_s": round(events / consumer_seconds),
        "copy_rows_per_s": round(rows / copy_seconds),
        "naive_rows_per_s": round(naive_rate),
    }
    results["consumer_vs_copy"] = round(results["consumer_events_per_s"] / results["copy_rows_per_s"], 3)
    results["consumer_vs_naive"] = round(results["consumer_events_per_s"] / results["naive_rows_per_s"], 1)
    _report(results)
    scratch = [f"{prefix}.public.{t}" for t in TABLES] + [f"{prefix}.items", f"{prefix}.dlq"]
    AdminClient({"bootstrap.servers": settings["KAFKA_BOOTSTRAP"]}).delete_topics(scratch)


def _report(results: dict) -> None:
    table = Table("measure", "value", title="DWH ingest throughput (partitioned realtime_events)")
    table.add_row("change events pre-filled", f"{results['events']:,}")
    table.add_row("our consumer", f"{results['consumer_events_per_s']:,} events/s")
    table.add_row("COPY ceiling (same rows)", f"{results['copy_rows_per_s']:,} rows/s")
    table.add_row("naive INSERT+COMMIT per row", f"{results['naive_rows_per_s']:,} rows/s")
    table.add_row("consumer / COPY", f"{results['consumer_vs_copy']:.0%}")
    table.add_row("consumer / naive", f"{results['consumer_vs_naive']}x")
    console.print(table)
    out = Path("var/bench/consumer_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**results, "measured_at": datetime.now(UTC).isoformat()}, indent=2))
    console.print(f"saved {out}")


if __name__ == "__main__":
    main()
