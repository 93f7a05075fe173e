"""End-to-end latency on both paths at several loads: OLTP commit -> DWH row, OLTP commit -> Redis metric.

    .venv/bin/python -m benchmarks.e2e_latency [--rates 100,1000,5000] [--seconds 40]

Needs the running pipeline: the Debezium connector, the consumer and the Spark app (`make demo`
without the generator: `instashop connector register && instashop jobs start consumer spark`).
For each rate, the shop generator writes sessions at that many row changes/s while two probes run
side by side through the production jobs:
  - DWH: one search every 50 ms in a probe session; a watcher polls `realtime_events` (read-only
    role, every 5 ms) for it. Latency = first seen - commit returned.
  - Redis: 4 transactions/s with `created_at` in past 10-second windows nobody else writes to; a
    poller watches the window's `transactions` counter (see realtime_latency.py).
A path keeps up with a rate when its latency does not grow while the load lasts (lag would show as
a rising latency): the median of the last third of the probes stays within 1 s of the first third's.
The max sustained rate is the highest rate the generator reached (>= 90 % of the asked rate) with
both paths keeping up. Prints a table, saves var/bench/e2e_latency.json and .png.
"""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg2
import redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks.realtime_latency import Prober, probe_windows
from benchmarks.report import BENCH_DIR, bar_chart, save_results
from instashop import generator, live_metrics
from instashop.config import Settings, load_settings
from instashop.connector import load_config
from instashop.jobs import spark_job

console = Console(width=160)
DWH_PROBE_INTERVAL = 0.05
REDIS_PROBE_INTERVAL = 0.25
POLL_INTERVAL = 0.005
GRACE_SECONDS = 60.0
GOAL_P99_MS = 1000.0
WRITER_RATE = 1000.0  # row changes/s per generator thread


@dataclass
class PathResult:
    """Latencies (ms) of one path at one rate, in commit order, and the probes never seen."""

    latencies: list[float] = field(default_factory=list)
    missing: int = 0

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        return (
            statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]
            if q < 100
            else max(self.latencies)
        )

    def keeps_up(self) -> bool:
        """No growing lag: the last third's median is within 1 s of the first third's."""
        if self.missing or len(self.latencies) < 6:
            return False
        third = len(self.latencies) // 3
        return statistics.median(self.latencies[-third:]) < statistics.median(self.latencies[:third]) + 1000

    def as_dict(self) -> dict[str, float | int | bool | None]:
        figures = {f"p{q}_ms": _round(self.percentile(q)) for q in (50, 95, 99)}
        return {
            "probes": len(self.latencies),
            "missing": self.missing,
            **figures,
            "max_ms": _round(self.percentile(100)),
            "keeps_up": self.keeps_up(),
        }


@dataclass
class RateResult:
    rate: float
    achieved: float
    dwh: PathResult
    redis: PathResult

    def sustained(self) -> bool:
        return self.achieved >= 0.9 * self.rate and self.dwh.keeps_up() and self.redis.keeps_up()


# --- DWH probe ------------------------------------------------------------------------------------


class DwhProbe:
    """Commits searches into one dedicated session and times when each is visible in the DWH."""

    def __init__(self, settings: Settings) -> None:
        self.oltp = psycopg2.connect(settings["OLTP_DSN"], application_name="instashop-latency-bench")
        self.dwh = psycopg2.connect(settings["DWH_READONLY_DSN"], application_name="instashop-latency-bench")
        self.dwh.autocommit = True
        self.session_id = f"probe_{uuid.uuid4().hex[:12]}"
        self.committed: dict[str, float] = {}  # event_key -> commit returned (perf_counter)
        self.seen: dict[str, float] = {}
        with self.oltp, self.oltp.cursor() as cur:
            cur.execute("SELECT min(customer_id) FROM customers")
            (self.customer_id,) = cur.fetchone()
            cur.execute(
                "INSERT INTO sessions (session_id, customer_id, device, started_at) VALUES (%s, %s, 'probe', now())",
                (self.session_id, self.customer_id),
            )

    def fire(self) -> None:
        with self.oltp, self.oltp.cursor() as cur:
            cur.execute(
                "INSERT INTO searches (session_id, customer_id, query, results_count, searched_at) "
                "VALUES (%s, %s, 'latency probe', 0, now()) RETURNING search_id",
                (self.session_id, self.customer_id),
            )
            (search_id,) = cur.fetchone()
        self.committed[f"searches:{search_id}"] = time.perf_counter()

    def poll(self) -> None:
        pending = [key for key in list(self.committed) if key not in self.seen]
        if not pending:
            return
        with self.dwh.cursor() as cur:
            cur.execute("SELECT event_key FROM realtime_events WHERE event_key = ANY(%s)", (pending,))
            now = time.perf_counter()
            for (key,) in cur.fetchall():
                self.seen[key] = now

    def wait_caught_up(self, timeout: float = 600.0) -> float:
        """Fire one probe and wait until the DWH has it; returns the seconds it took (not measured).

        Debezium's logical decoding reads the whole cluster's WAL, the warehouse's writes included:
        after a heavy load of the DWH (the ingest benchmark writes millions of rows) it needs a while
        before new shop changes come through, which is a backlog, not this benchmark's latency.
        """
        started = time.perf_counter()
        self.fire()
        while len(self.seen) < len(self.committed):
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"a DWH probe was not seen within {timeout:.0f} s: is the pipeline running?")
            time.sleep(0.1)
            self.poll()
        self.committed.clear()
        self.seen.clear()
        return time.perf_counter() - started

    def result(self) -> PathResult:
        latencies = [(self.seen[k] - at) * 1000 for k, at in self.committed.items() if k in self.seen]
        return PathResult(latencies, len(self.committed) - len(latencies))

    def close(self) -> None:
        with self.oltp, self.oltp.cursor() as cur:
            cur.execute("UPDATE sessions SET ended_at = now() WHERE session_id = %s", (self.session_id,))
        self.oltp.close()
        self.dwh.close()


# --- one rate -------------------------------------------------------------------------------------


def measure(settings: Settings, client: redis.Redis, rate: float, seconds: float, progress: Progress) -> RateResult:
    dwh, live = DwhProbe(settings), Prober(settings, client, live_metrics.PREFIX)
    waited = dwh.wait_caught_up()
    if waited > 1:
        console.print(f"the CDC path had a backlog: caught up after {waited:.0f} s")
    stop_polling = threading.Event()
    pollers = [threading.Thread(target=_poll_until, args=(p, stop_polling), daemon=True) for p in (dwh, live)]
    for poller in pollers:
        poller.start()
    writers, summaries = _load(settings, rate, seconds)
    task = progress.add_task(f"{rate:,.0f} events/s", total=seconds)
    try:
        for writer in writers:
            writer.start()
        started, windows, next_live = time.perf_counter(), probe_windows(time.time()), 0.0
        while any(writer.is_alive() for writer in writers):
            elapsed = time.perf_counter() - started
            dwh.fire()
            if elapsed >= next_live:
                live.commit(windows[int(next_live / REDIS_PROBE_INTERVAL) % len(windows)])
                next_live += REDIS_PROBE_INTERVAL
            progress.update(task, completed=min(elapsed, seconds))
            time.sleep(DWH_PROBE_INTERVAL)
        for writer in writers:
            writer.join()
        _drain(dwh, live)
    finally:
        stop_polling.set()
        for poller in pollers:
            poller.join()
        dwh.close()
        live.delete_probes()
    achieved = sum(summary.per_second(summary.row_changes) for summary in summaries)
    redis_ms = [1000 * (p.visible - p.committed) for p in live.probes if p.visible]
    return RateResult(rate, achieved, dwh.result(), PathResult(redis_ms, len(live.probes) - len(redis_ms)))


def _load(settings: Settings, rate: float, seconds: float) -> tuple[list[threading.Thread], list[generator.Summary]]:
    """Generator threads sharing the rate: one writes ~1,000 row changes/s at most on this machine."""
    workers = max(1, math.ceil(rate / WRITER_RATE))
    summaries: list[generator.Summary] = []

    def write(seed: int) -> None:
        # Commits need not wait for the WAL flush: the load is background, the probes commit normally.
        config = generator.GeneratorConfig(rate=rate / workers, duration=seconds, synchronous_commit=False, seed=seed)
        summaries.append(generator.run(settings["OLTP_DSN"], config, show_progress=False))

    return [threading.Thread(target=write, args=(int(rate) + n,)) for n in range(workers)], summaries


def _poll_until(probe: DwhProbe | Prober, stop: threading.Event) -> None:
    while not stop.is_set():
        probe.poll()
        time.sleep(POLL_INTERVAL)


def _drain(dwh: DwhProbe, live: Prober) -> None:
    """Until every probe is seen on both paths, or the grace time is over (the rest count as missing)."""
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        if len(dwh.seen) == len(dwh.committed) and all(p.visible for p in live.probes):
            return
        time.sleep(0.2)


# --- report -----------------------------------------------------------------------------------------


def report(results: list[RateResult], settings: Settings, client: redis.Redis) -> None:
    table = Table(title="OLTP commit -> visible (ms): DWH row and Redis metric")
    for column in ("asked ev/s", "achieved ev/s", "path", "probes", "p50", "p95", "p99", "max", "keeps up"):
        table.add_column(column, justify="right")
    for r in results:
        for name, path in (("DWH", r.dwh), ("Redis", r.redis)):
            table.add_row(
                f"{r.rate:,.0f}",
                f"{r.achieved:,.0f}",
                name,
                f"{len(path.latencies)}" + (f" ({path.missing} missing)" if path.missing else ""),
                *(_ms(path.percentile(q)) for q in (50, 95, 99, 100)),
                "yes" if path.keeps_up() else "[red]no[/]",
            )
    console.print(table)
    sustained = max((r.achieved for r in results if r.sustained()), default=None)
    at_1000 = next((r for r in results if r.rate == 1000), None)
    console.print(f"max sustained rate (both paths keep up): {_rate(sustained)}")
    if at_1000:
        for name, path in (("DWH", at_1000.dwh), ("Redis", at_1000.redis)):
            p99 = path.percentile(99)
            verdict = "met" if p99 is not None and p99 < GOAL_P99_MS else "[red]missed[/]"
            console.print(f"goal p99 < 1 s at 1,000 events/s, {name}: {_ms(p99)} ms, {verdict}")
    settings_used = _settings_used(client)
    console.print(f"settings: {settings_used}")
    save_results(
        "e2e_latency",
        {
            "rates": [
                {
                    "rate": r.rate,
                    "achieved": round(r.achieved),
                    "sustained": r.sustained(),
                    "dwh": r.dwh.as_dict(),
                    "redis": r.redis.as_dict(),
                }
                for r in results
            ],
            "max_sustained_rate": round(sustained) if sustained else None,
            "settings": settings_used,
        },
    )
    groups = [f"{r.rate:,.0f}/s {path}" for r in results for path in ("DWH", "Redis")]
    paths = [p for r in results for p in (r.dwh, r.redis)]
    series = {f"p{q}": [p.percentile(q) for p in paths] for q in (50, 95, 99)}
    chart = bar_chart(BENCH_DIR / "e2e_latency.png", "OLTP commit -> visible", groups, series, threshold=GOAL_P99_MS)
    console.print(f"saved {BENCH_DIR / 'e2e_latency.json'} and {chart}")


def _settings_used(client: redis.Redis) -> dict[str, object]:
    connector = load_config()
    beat = live_metrics.read_heartbeat(client) or {}
    return {
        "debezium_poll_interval_ms": int(connector["poll.interval.ms"]),
        "debezium_max_batch_size": int(connector.get("max.batch.size", 2048)),
        "consumer_batch_timeout_ms": 100,
        "spark_trigger": beat.get("mode"),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(value: float | None) -> str:
    return "none of the rates" if value is None else f"{value:,.0f} events/s"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,1000,5000", help="generator row changes/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=40, help="load per rate (default 40)")
    args = parser.parse_args()
    try:
        rates = [float(rate) for rate in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if any(rate <= 0 for rate in rates) or args.seconds < 10:
        parser.error("every rate must be > 0 and --seconds at least 10")
    settings = load_settings()
    client = redis.Redis.from_url(settings["REDIS_URL"])
    if not spark_job(settings).pid():
        parser.error("the Spark app is not running: `instashop jobs start consumer spark` first")
    with Progress(console=console) as progress:
        results = [measure(settings, client, rate, args.seconds, progress) for rate in rates]
    report(results, settings, client)


if __name__ == "__main__":
    main()
