"""End-to-end latency OLTP commit -> row visible in the DWH, under a steady generator load.

    .venv/bin/python benchmarks/dwh_latency.py [--rate 1000] [--seconds 30]

Needs the running pipeline (`make demo`, or `instashop connector register` + `instashop jobs start
consumer`). While the generator writes shop traffic at --rate events/s, a probe commits one search
every 50 ms in a session of its own and a watcher polls the DWH (every 5 ms, read-only role) for
the probes; latency = first seen - commit returned. Prints p50/p95/p99/max and writes
var/bench/dwh_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from instashop import generator
from instashop.config import Settings, load_settings
from instashop.connector import load_config

console = Console()
PROBE_INTERVAL = 0.05
POLL_INTERVAL = 0.005


class Probe:
    """Commits searches into one dedicated session and remembers when each commit returned."""

    def __init__(self, settings: Settings) -> None:
        self.conn = psycopg2.connect(settings["OLTP_DSN"])
        self.session_id = f"probe_{uuid.uuid4().hex[:12]}"
        self.committed: dict[str, float] = {}
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT min(customer_id) FROM customers")
            (self.customer_id,) = cur.fetchone()
            cur.execute(
                "INSERT INTO sessions (session_id, customer_id, device, started_at) VALUES (%s, %s, 'probe', now())",
                (self.session_id, self.customer_id),
            )

    def fire(self) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO searches (session_id, customer_id, query, results_count, searched_at) "
                "VALUES (%s, %s, 'latency probe', 0, now()) RETURNING search_id",
                (self.session_id, self.customer_id),
            )
            (search_id,) = cur.fetchone()
        self.committed[f"searches:{search_id}"] = time.perf_counter()

    def close(self) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute("UPDATE sessions SET ended_at = now() WHERE session_id = %s", (self.session_id,))
        self.conn.close()


def watch(settings: Settings, probe: Probe, stop: threading.Event, grace: float = 30.0) -> dict[str, float]:
    """First time each probe row is visible in the DWH; gives up `grace` seconds after stop."""
    seen: dict[str, float] = {}
    give_up_at = float("inf")
    conn = psycopg2.connect(settings["DWH_READONLY_DSN"])
    conn.autocommit = True
    with conn.cursor() as cur:
        while time.perf_counter() < give_up_at:
            if stop.is_set():
                give_up_at = min(give_up_at, time.perf_counter() + grace)
                if len(seen) == len(probe.committed):
                    break
            pending = [key for key in list(probe.committed) if key not in seen]
            if pending:
                cur.execute("SELECT event_key FROM realtime_events WHERE event_key = ANY(%s)", (pending,))
                now = time.perf_counter()
                for (key,) in cur.fetchall():
                    seen[key] = now
            time.sleep(POLL_INTERVAL)
    conn.close()
    return seen


def measure(settings: Settings, rate: float, seconds: float) -> list[float]:
    load = threading.Thread(
        target=generator.run,
        args=(settings["OLTP_DSN"], generator.GeneratorConfig(rate=rate, duration=seconds + 2, seed=5)),
        kwargs={"console": None},
        daemon=True,
    )
    load.start()
    probe, stop = Probe(settings), threading.Event()
    seen: dict[str, float] = {}
    watcher = threading.Thread(target=lambda: seen.update(watch(settings, probe, stop)))
    watcher.start()
    started = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task(f"probing under {rate:,.0f} events/s", total=seconds)
        while (elapsed := time.perf_counter() - started) < seconds:
            probe.fire()
            progress.update(task, completed=elapsed)
            time.sleep(PROBE_INTERVAL)
    stop.set()
    watcher.join()
    load.join()
    probe.close()
    missing = len(probe.committed) - len(seen)
    if missing:
        console.print(f"[red]{missing} probes were not seen in the DWH within 30 s[/]")
    return [(seen[key] - committed) * 1000 for key, committed in probe.committed.items() if key in seen]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000, help="background load, events/s (default 1000)")
    parser.add_argument("--seconds", type=float, default=30, help="probing time (default 30)")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds < 5:
        parser.error("--rate must be > 0 and --seconds at least 5")
    settings = load_settings()
    latencies = measure(settings, args.rate, args.seconds)
    results = {
        "background_rate_events_per_s": args.rate,
        "probes": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "debezium_poll_interval_ms": int(load_config()["poll.interval.ms"]),
        "consumer_batch_timeout_ms": 100,
    }
    table = Table("measure", "value", title="OLTP commit -> DWH row visible")
    for key, value in results.items():
        table.add_row(key, f"{value:,}")
    console.print(table)
    out = Path("var/bench/dwh_latency.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**results, "measured_at": datetime.now(UTC).isoformat()}, indent=2))
    console.print(f"saved {out}")


if __name__ == "__main__":
    main()
