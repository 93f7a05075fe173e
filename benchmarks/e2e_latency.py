"""End-to-end latency on both paths at several loads: OLTP commit -> DWH row, OLTP commit -> Redis metric.

    .venv/bin/python -m benchmarks.e2e_latency [--rates 100,1000,5000] [--seconds 40] [--goal-seconds 330]

Needs the running pipeline: the Debezium connector, the consumer and the Spark app (`make demo`
without the generator: `instashop connector register && instashop jobs start consumer spark`).
For each rate, the shop generator writes sessions at that many row changes/s while two probes run
side by side through the production jobs:
  - DWH: one search every 50 ms in a probe session; a watcher polls `realtime_events` (read-only
    role, every 5 ms) for it. Latency = first seen - commit returned.
  - Redis: 4 transactions/s with `created_at` in past 10-second windows nobody else writes to; a
    poller watches the window's `transactions` counter (see realtime_latency.py).
The goal rate (1,000/s) runs for --goal-seconds, longer than the Spark app's checkpoint interval in
Real-time Mode (5 minutes): each checkpoint pauses the stream for seconds, so a shorter window holds
either no pause or one at several times its real share, and its p99 says more about luck than about
the pipeline. The table shows how many checkpoints (Spark batches) each window held.
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
from datetime import datetime

import psycopg2
import redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks.load import BrokenRun, LoadThread
from benchmarks.realtime_latency import Prober, probe_customer, probe_windows
from benchmarks.report import BENCH_DIR, bar_chart, save_results
from instashop.capture.connector import load_config
from instashop.devstack import generator
from instashop.live import metrics as live_metrics
from instashop.ops.jobs import spark_job
from instashop.settings import Settings, load_settings

console = Console(width=160)
DWH_PROBE_INTERVAL = 0.05
REDIS_PROBE_INTERVAL = 0.25
POLL_INTERVAL = 0.005
GRACE_SECONDS = 60.0
GOAL_P99_MS = 1000.0
GOAL_RATE = 1000.0
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
    seconds: float
    achieved: float
    dwh: PathResult
    redis: PathResult
    spark_batches: int | None = None  # batches the Spark app ended meanwhile (checkpoints in Real-time Mode)

    def sustained(self) -> bool:
        return self.achieved >= 0.9 * self.rate and self.dwh.keeps_up() and self.redis.keeps_up()


# --- DWH probe ------------------------------------------------------------------------------------


class DwhProbe:
    """Commits searches into one dedicated session and times when each is visible in the DWH."""

    def __init__(self, settings: Settings) -> None:
        self.oltp = psycopg2.connect(settings.oltp_dsn, application_name="instashop-latency-bench")
        self.dwh = psycopg2.connect(settings.dwh_readonly_dsn, application_name="instashop-latency-bench")
        self.dwh.autocommit = True
        self.session_id = f"probe_{uuid.uuid4().hex[:12]}"
        self.committed: dict[str, float] = {}  # event_key -> commit returned (perf_counter)
        self.seen: dict[str, float] = {}
        with self.oltp, self.oltp.cursor() as cur:
            self.customer_id = probe_customer(cur)
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

        Debezium's logical decoding reads the whole WAL of the shop's cluster: a backlog there (a
        heavy load of the shop, or of anything else on its cluster) delays the first new change,
        which is not this benchmark's latency. The warehouse has its own cluster, so the ingest
        benchmark's millions of DWH rows no longer make one (they cost ~60 s on one cluster).
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
    waited, waited_live = dwh.wait_caught_up(), _live_caught_up(live)
    console.print(f"first probe through the CDC path after {waited:.1f} s" + (" (a backlog)" if waited > 1 else ""))
    if waited_live > 1:
        console.print(f"the Spark app had a backlog: caught up after {waited_live:.0f} s")
    warm_up_probes = len(live.probes)
    stop_polling = threading.Event()
    pollers = [threading.Thread(target=_poll_until, args=(p, stop_polling), daemon=True) for p in (dwh, live)]
    for poller in pollers:
        poller.start()
    writers = _load(settings, rate, seconds)
    task = progress.add_task(f"{rate:,.0f} events/s", total=seconds)
    batches = SparkBatches(client)
    try:
        for writer in writers:
            writer.start()
        started, next_live, sent = time.perf_counter(), 0.0, 0
        while any(writer.is_alive() for writer in writers):
            elapsed = time.perf_counter() - started
            dwh.fire()
            if elapsed >= next_live:
                # Windows move on with the clock: over minutes, fixed ones would pass the watermark.
                windows = probe_windows(time.time())
                live.commit(windows[sent % len(windows)])
                next_live, sent = next_live + REDIS_PROBE_INTERVAL, sent + 1
                batches.poll()
            progress.update(task, completed=min(elapsed, seconds))
            time.sleep(DWH_PROBE_INTERVAL)
        for writer in writers:
            writer.join()
        summaries = [writer.summary() for writer in writers]  # BrokenRun if a generator failed
        _drain(dwh, live)
    finally:
        stop_polling.set()
        for poller in pollers:
            poller.join()
        dwh.close()
        live.delete_probes()
    achieved = sum(summary.per_second(summary.row_changes) for summary in summaries)
    probes = live.probes[warm_up_probes:]
    redis_ms = [1000 * (p.visible - p.committed) for p in probes if p.visible]
    slowest = sorted((p for p in probes if p.visible), key=lambda p: p.visible - p.committed)[-3:]
    when = [f"{datetime.fromtimestamp(p.committed):%H:%M:%S} ({p.visible - p.committed:.1f} s)" for p in slowest]
    console.print(f"  slowest Redis probes, committed at (see the Spark app's batch log): {', '.join(when)}")
    redis_result = PathResult(redis_ms, len(probes) - len(redis_ms))
    return RateResult(rate, seconds, achieved, dwh.result(), redis_result, batches.ended)


class SparkBatches:
    """Counts the batches the Spark app ends while watched (its heartbeat's batch id moves)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.ended = client, 0
        self.last = self._batch_id()

    def poll(self) -> None:
        current = self._batch_id()
        if current is not None and current != self.last:
            self.ended += current - self.last if self.last is not None else 1
            self.last = current

    def _batch_id(self) -> int | None:
        batch_id = (live_metrics.read_heartbeat(self.client) or {}).get("batch_id")
        return None if batch_id in (None, "") else int(batch_id)


def _live_caught_up(live: Prober, timeout: float = 600.0) -> float:
    """Commit one probe and wait until Redis counts it; returns the seconds it took (not measured).

    A Spark app that was just (re)started replays from its last checkpoint and then warms up its
    JIT under load: its backlog is not the latency of a running pipeline.
    """
    started = time.perf_counter()
    probe = live.commit(probe_windows(time.time())[-1])
    while probe.visible is None:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"a Redis probe was not counted within {timeout:.0f} s: is the Spark app running?")
        time.sleep(0.1)
        live.poll()
    return time.perf_counter() - started


def _load(settings: Settings, rate: float, seconds: float) -> list[LoadThread]:
    """Generator threads sharing the rate: one writes ~1,000 row changes/s at most on this machine."""
    workers = max(1, math.ceil(rate / WRITER_RATE))
    # Commits need not wait for the WAL flush: the load is background, the probes commit normally.
    configs = [
        generator.GeneratorConfig(rate=rate / workers, duration=seconds, synchronous_commit=False, seed=int(rate) + n)
        for n in range(workers)
    ]
    return [LoadThread(settings.oltp_dsn, config, name=f"load-{n}") for n, config in enumerate(configs)]


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
    columns = ("asked ev/s", "achieved ev/s", "seconds", "Spark batches", "path", "probes", "p50", "p95", "p99", "max")
    for column in (*columns, "keeps up"):
        table.add_column(column, justify="right")
    for r in results:
        for name, path in (("DWH", r.dwh), ("Redis", r.redis)):
            table.add_row(
                f"{r.rate:,.0f}",
                f"{r.achieved:,.0f}",
                f"{r.seconds:.0f}",
                "-" if r.spark_batches is None else str(r.spark_batches),
                name,
                f"{len(path.latencies)}" + (f" ({path.missing} missing)" if path.missing else ""),
                *(_ms(path.percentile(q)) for q in (50, 95, 99, 100)),
                "yes" if path.keeps_up() else "[red]no[/]",
            )
    console.print(table)
    sustained = max((r.achieved for r in results if r.sustained()), default=None)
    at_goal = next((r for r in results if r.rate == GOAL_RATE), None)
    console.print(f"max sustained rate (both paths keep up): {_rate(sustained)}")
    if at_goal:
        for name, path in (("DWH", at_goal.dwh), ("Redis", at_goal.redis)):
            p99 = path.percentile(99)
            verdict = "met" if p99 is not None and p99 < GOAL_P99_MS else "[red]missed[/]"
            over = f"{GOAL_RATE:,.0f} events/s over {at_goal.seconds:.0f} s"
            console.print(f"goal p99 < 1 s at {over}, {name}: {_ms(p99)} ms, {verdict}")
    settings_used = _settings_used(client)
    console.print(f"settings: {settings_used}")
    save_results(
        "e2e_latency",
        {
            "rates": [
                {
                    "rate": r.rate,
                    "achieved": round(r.achieved),
                    "seconds": r.seconds,
                    "spark_batches": r.spark_batches,
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
    parser.add_argument(
        "--goal-seconds",
        type=float,
        default=330,
        help=f"load at the goal rate ({GOAL_RATE:,.0f}/s; default 330: a Real-time checkpoint interval and more)",
    )
    args = parser.parse_args()
    try:
        rates = [float(rate) for rate in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if any(rate <= 0 for rate in rates) or min(args.seconds, args.goal_seconds) < 10:
        parser.error("every rate must be > 0, and --seconds and --goal-seconds at least 10")
    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url)
    if not spark_job(settings).pid():
        parser.error("the Spark app is not running: `instashop jobs start consumer spark` first")
    try:
        with Progress(console=console) as progress:
            results = [
                measure(settings, client, rate, args.goal_seconds if rate == GOAL_RATE else args.seconds, progress)
                for rate in rates
            ]
    except BrokenRun as err:
        raise SystemExit(f"e2e_latency: {err}; no result is reported for a broken run") from err
    report(results, settings, client)


if __name__ == "__main__":
    main()
