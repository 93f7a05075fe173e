"""OLTP commit -> metric visible in Redis, under ~1,000 events/s, for each trigger of the Spark app.

Not a test: prints a table. For each mode it starts its own instance of plugins/instashop/live/spark/app.py
(own checkpoint, key prefix live:bench:<run>, no UI), so nobody's `live:*` keys are touched, while the
app `instashop spark start` runs is stopped (stream_supervisor paused meanwhile): one Spark app on the
box, as in production. Mode `running` measures that app instead (its past live:* windows then count
the probes). For each:

1. load: the shop generator writes sessions at --rate row changes/s for --duration seconds, after
   --warm-up-seconds of the same load (not measured: a new instance catches up while its JVM warms);
2. probes: meanwhile, --probes-per-second single transactions are committed with `created_at` in
   10-second windows 70 s to 4 min in the past (no other order lands there: the generator's orders
   are at most 30 s old), and a poller watches Redis until each window's `transactions` counter
   includes the probe. Latency = visible - commit (wall clock, one host). A Kafka consumer on the
   transactions topic splits it into CDC (commit -> record in Kafka) and Spark (Kafka -> Redis);
3. capacity: an instance starting from the earliest offsets (the topics' whole history) reports how
   many Kafka records/s it processes while catching up: the input rate it sustains without lag.

The probes go through the real pipeline, so the shared live:* metrics and the DWH see them too; they
are deleted from the OLTP afterwards (the DWH follows; live windows keep them as orders placed).

    .venv/bin/python -m benchmarks.realtime_latency [--modes micro-batch,real-time] [--rate 1000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import redis
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from benchmarks.load import BrokenRun, LoadThread
from benchmarks.report import BENCH_DIR, bar_chart, save_results
from instashop import kafka_auth
from instashop.capture import topics
from instashop.devstack import generator
from instashop.live import metrics as live_metrics
from instashop.live.spark.options import spark_scratch
from instashop.ops import supervisor
from instashop.ops.airflow_api import AirflowApiError, AirflowClient
from instashop.ops.jobs import Job, spark_job
from instashop.ops.process import wait_until
from instashop.settings import Settings, load_settings

console = Console(width=170)
TRANSACTIONS_TOPIC = "instashop.public.transactions"
PROBE_AMOUNT = "1.00"
_BATCH_LINE = re.compile(r"^(\S+ \S+) INFO realtime_metrics: batch (\d+): (\d+) rows, ms: (.*?), state")


@dataclass
class Probe:
    window: int  # 10-second window start (epoch s)
    expected: int  # the window's transactions once this probe is counted
    committed: float
    transaction_id: int
    in_kafka: float | None = None
    visible: float | None = None


@dataclass
class Run:
    mode: str
    interval: str
    probes: list[Probe] = field(default_factory=list)
    generated: generator.Summary | None = None
    batches: list[tuple[int, int]] = field(default_factory=list)  # (input rows, triggerExecution ms)
    capacity: float | None = None  # Kafka records/s while catching up


# --- the app under test -----------------------------------------------------------------------


def start_instance(settings: Settings, run_id: str, mode: str, *extra: str) -> Job:
    name = f"spark-bench-{mode}-{run_id}"
    checkpoint = _checkpoint(settings, name)
    shutil.rmtree(checkpoint, ignore_errors=True)
    args = ["--trigger", mode, "--key-prefix", prefix(run_id), "--checkpoint", str(checkpoint), "--no-ui", *extra]
    job = spark_job(settings, *args, name=name)
    job.start()
    return job


def _checkpoint(settings: Settings, name: str) -> Path:
    return settings.var_dir / "spark" / "bench" / name


def prefix(run_id: str) -> str:
    return f"{live_metrics.PREFIX}:bench:{run_id}"


def stop_instance(settings: Settings, job: Job, client: redis.Redis, run_id: str) -> None:
    job.stop(timeout=60)
    checkpoint = _checkpoint(settings, job.name)
    for folder in (checkpoint, spark_scratch(checkpoint)):
        shutil.rmtree(folder, ignore_errors=True)
    for key in client.scan_iter(f"{prefix(run_id)}:*", count=1000):
        client.delete(key)
    admin = AdminClient(kafka_auth.client_config(settings, kafka_auth.ADMIN))
    admin.delete_topics([topics.live_aggregates(prefix(run_id))])  # Real-time Mode's, if any


def batch_lines(log_file: Path, since: float) -> list[tuple[int, int]]:
    """(input rows, batch duration ms) of the batches the app logged after `since`."""
    batches = []
    for line in log_file.read_text(errors="replace").splitlines():
        match = _BATCH_LINE.match(line)
        if not match:
            continue
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        durations = dict(part.split("=") for part in match[4].split())
        if at >= since and int(match[3]) > 0:
            batches.append((int(match[3]), int(durations.get("triggerExecution", 0))))
    return batches


# --- probes -------------------------------------------------------------------------------------


def probe_customer(cur) -> int:
    """A customer for the probes' rows: the shop's first, or one made for them in an empty shop
    (a fresh `make up` without `make demo`)."""
    cur.execute("SELECT min(customer_id) FROM customers")
    (customer_id,) = cur.fetchone()
    if customer_id is None:
        cur.execute(
            "INSERT INTO customers (name, email, country) VALUES ('Latency Probe', %s, 'ZZ') RETURNING customer_id",
            (f"latency-probe-{uuid.uuid4().hex[:12]}@example.invalid",),
        )
        (customer_id,) = cur.fetchone()
    return customer_id


class Prober:
    """Commits probe transactions into free 10-second windows and times when Redis counts them."""

    def __init__(self, settings: Settings, client: redis.Redis, key_prefix: str) -> None:
        self.conn = psycopg2.connect(settings.oltp_dsn, application_name="instashop-latency-bench")
        with self.conn, self.conn.cursor() as cur:
            self.customer_id = probe_customer(cur)
        self.client, self.prefix = client, key_prefix
        self.probes: list[Probe] = []
        self.counts: dict[int, int] = {}
        self.lock = threading.Lock()
        self.kafka = _tail_consumer(settings)

    def commit(self, window: int) -> Probe:
        at = datetime.fromtimestamp(window + 5, UTC)
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO transactions (customer_id, total_amount, payment_method, status, created_at, updated_at)"
                " VALUES (%s, %s, 'bank_transfer', 'pending', %s, %s) RETURNING transaction_id",
                (self.customer_id, PROBE_AMOUNT, at, at),
            )
            transaction_id = cur.fetchone()[0]
        committed = time.time()
        with self.lock:
            self.counts[window] = self.counts.get(window, self._baseline(window)) + 1
            probe = Probe(window, self.counts[window], committed, transaction_id)
            self.probes.append(probe)
        return probe

    def _baseline(self, window: int) -> int:
        """Orders the window already holds (a running app's past windows); nobody else adds to them now."""
        value = self.client.hget(
            live_metrics.window_key(live_metrics.TOTALS, "10s", window, self.prefix), "transactions"
        )
        return int(value or 0)

    def poll(self) -> None:
        """One round: Kafka arrivals, then the windows' counters in one pipelined round trip."""
        self._kafka_arrivals()
        with self.lock:
            waiting = [p for p in self.probes if p.visible is None]
        if not waiting:
            return
        pipe = self.client.pipeline(transaction=False)
        for p in waiting:
            pipe.hget(live_metrics.window_key(live_metrics.TOTALS, "10s", p.window, self.prefix), "transactions")
        now = time.time()
        for p, value in zip(waiting, pipe.execute(), strict=True):
            if value is not None and int(value) >= p.expected:
                p.visible = now

    def _kafka_arrivals(self) -> None:
        for message in self.kafka.consume(500, timeout=0):
            if message.error() or message.value() is None or PROBE_AMOUNT.encode() not in message.value():
                continue
            now = time.time()
            with self.lock:
                for p in self.probes:
                    if p.in_kafka is None and f'"transaction_id":{p.transaction_id},'.encode() in message.value():
                        p.in_kafka = now

    def delete_probes(self) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "DELETE FROM transactions WHERE transaction_id = ANY(%s)", ([p.transaction_id for p in self.probes],)
            )
        self.conn.close()
        self.kafka.close()


def _tail_consumer(settings: Settings) -> Consumer:
    kafka = kafka_auth.client_config(settings, kafka_auth.ADMIN)  # the benchmark's own probe
    consumer = Consumer({**kafka, "group.id": "latency-bench", "enable.auto.commit": False})
    partitions = consumer.list_topics(TRANSACTIONS_TOPIC, timeout=10).topics[TRANSACTIONS_TOPIC].partitions
    consumer.assign([TopicPartition(TRANSACTIONS_TOPIC, p, OFFSET_END) for p in partitions])
    return consumer


def probe_windows(now: float) -> list[int]:
    """Past 10-second windows no generated order lands in: from 4 min to 70 s ago."""
    newest = live_metrics.window_start(now - 70, "10s")
    return [newest - 10 * i for i in range(18)]


# --- one mode ----------------------------------------------------------------------------------


def measure(settings: Settings, client: redis.Redis, run_id: str, mode: str, args: argparse.Namespace) -> Run:
    """One trigger mode on an instance of its own, or (mode `running`) the app already running."""
    if mode == "running":
        job, key_prefix = spark_job(settings), live_metrics.PREFIX
        beat = live_metrics.read_heartbeat(client) or {}
        if not job.pid() or beat.get("status") != "running":
            raise RuntimeError("no running Spark app to measure: `instashop spark start` first")
        run = Run(f"running ({beat.get('mode')})", args.interval or "its own")
    else:
        interval = args.interval or ("5 minutes" if mode == "real-time" else "0 seconds")  # the app's defaults
        run = Run(mode, interval)
        job = start_instance(settings, run_id, mode, "--interval", interval, "--watermark", args.watermark)
        key_prefix = prefix(run_id)
    prober = Prober(settings, client, key_prefix)
    stop_polling = threading.Event()
    poller = threading.Thread(target=_poll_until, args=(prober, stop_polling), daemon=True)
    poller.start()
    try:
        console.print(f"[bold]{run.mode}[/]: warming up (log {job.process.log_file})")
        if not _warm_up(prober, job, timeout=240):
            raise RuntimeError(f"{mode}: the app did not count a probe within 240 s; see {job.process.log_file}")
        if args.warm_up_seconds:  # a fresh JVM meets the load's code paths: ~20 s of catching up
            console.print(f"  warming up under load for {args.warm_up_seconds:.0f} s (not measured)")
            _load_with_probes(settings, prober, argparse.Namespace(**{**vars(args), "duration": args.warm_up_seconds}))
            wait_until(lambda: all(p.visible for p in prober.probes), 60, 0.2)
        measured_from, warm_up_probes = time.time(), len(prober.probes)  # kept: delete_probes removes all
        run.generated = _load_with_probes(settings, prober, args)
        wait_until(lambda: all(p.visible for p in prober.probes), 60, 0.2)
        run.probes = prober.probes[warm_up_probes:]
        run.batches = batch_lines(job.process.log_file, measured_from)
    finally:
        stop_polling.set()
        poller.join()
        prober.delete_probes()
        if mode != "running":
            stop_instance(settings, job, client, run_id)
    return run


def _load_with_probes(settings: Settings, prober: Prober, args: argparse.Namespace) -> generator.Summary:
    load = generator.GeneratorConfig(rate=args.rate, duration=args.duration, customers=1000, products=200)
    writer = LoadThread(settings.oltp_dsn, load)
    console.print(f"  load: {args.rate:.0f} events/s for {args.duration:.0f} s, {args.probes_per_second} probes/s")
    writer.start()
    windows = probe_windows(time.time())
    i = 0
    while writer.is_alive():
        prober.commit(windows[i % len(windows)])
        i += 1
        time.sleep(1 / args.probes_per_second)
    writer.join()
    return writer.summary()  # BrokenRun if the load failed


def _poll_until(prober: Prober, stop: threading.Event) -> None:
    while not stop.is_set():
        prober.poll()
        time.sleep(0.005)


def _warm_up(prober: Prober, job: Job, timeout: float) -> bool:
    """Until a probe is counted (the first batches compile code and open the state stores)."""
    deadline = time.monotonic() + timeout
    # Older windows than the measured ones, a new one per attempt: probes committed before the app's
    # first offsets are never counted, so a reused window would never reach its expected count.
    oldest = probe_windows(time.time())[-1]
    for attempt in range(1, 30):
        if time.monotonic() >= deadline or not job.pid():
            break
        probe = prober.commit(oldest - 10 * attempt)
        if wait_until(lambda p=probe: p.visible is not None, 15, 0.1):
            return True
    return False


def capacity(settings: Settings, client: redis.Redis, run_id: str, mode: str, seconds: float, watermark: str) -> float:
    """Kafka records/s processed while catching up from the earliest offsets."""
    extra = ["--starting-offsets", "earliest", "--max-offsets-per-trigger", "50000", "--watermark", watermark]
    job = start_instance(settings, run_id, mode, *extra)
    try:
        started = time.time()
        wait_until(lambda: len(batch_lines(job.process.log_file, started)) >= 2, 240, 1)
        time.sleep(seconds)
        batches = batch_lines(job.process.log_file, started)[1:]  # the first one compiles and opens stores
    finally:
        stop_instance(settings, job, client, run_id)
    rows, millis = sum(b[0] for b in batches), sum(b[1] for b in batches)
    return rows / millis * 1000 if millis else 0.0


# --- report -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_figures(run: Run) -> dict[str, object]:
    """The figures of one mode, in ms (latencies from the probes, batch durations from the app's log)."""
    seen = [p for p in run.probes if p.visible]
    total = [1000 * (p.visible - p.committed) for p in seen]
    durations = [float(b[1]) for b in run.batches]
    return {
        "trigger": run.mode,
        "interval": run.interval,
        "probes": len(run.probes),
        "seen": len(seen),
        **{f"p{q}_ms": percentile(total, q) for q in (50, 90, 99, 100)},
        "cdc_p50_ms": percentile([1000 * (p.in_kafka - p.committed) for p in seen if p.in_kafka], 50),
        "spark_p50_ms": percentile([1000 * (p.visible - p.in_kafka) for p in seen if p.in_kafka], 50),
        "load_events_per_s": run.generated.per_second(run.generated.row_changes) if run.generated else None,
        "batches": len(run.batches),
        "batch_p50_ms": percentile(durations, 50),
        "batch_p99_ms": percentile(durations, 99),
        "capacity_records_per_s": run.capacity,
    }


def report(runs: list[Run], args: argparse.Namespace) -> None:
    figures = [run_figures(run) for run in runs]
    table = Table(title="OLTP commit -> metric visible in Redis (ms)")
    for column in ("trigger", "interval", "probes", "p50", "p90", "p99", "max", "CDC p50", "Spark p50"):
        table.add_column(column, justify="right")
    for column in ("load ev/s", "batches", "batch p50", "batch p99", "capacity rec/s"):
        table.add_column(column, justify="right")
    for f in figures:
        table.add_row(
            f["trigger"],
            f["interval"],
            f"{f['seen']}/{f['probes']}",
            *(_ms(f[key]) for key in ("p50_ms", "p90_ms", "p99_ms", "p100_ms", "cdc_p50_ms", "spark_p50_ms")),
            _ms(f["load_events_per_s"]),
            str(f["batches"]),
            _ms(f["batch_p50_ms"]),
            _ms(f["batch_p99_ms"]),
            _ms(f["capacity_records_per_s"]),
        )
    console.print(table)
    state = (
        "state store: RocksDB, changelog checkpointing, checkpoint format v2, FileSystem checkpoint manager "
        f"(in-process renames); shuffle partitions 1; watermark {args.watermark}, expired state evicted as "
        "batches run (up to 2 keys per input row); micro-batch: Kafka source "
        "coalesced to 1 task, maxOffsetsPerTrigger 20000; real-time: local[<Kafka partitions + 2 x shuffle + 2>] "
        "threads, Kafka sink + relay thread to Redis, 'batch' = its checkpoint interval (each pauses the stream "
        "for seconds). capacity: Kafka records/s while catching up from the earliest offsets (micro-batch, "
        "50,000 per batch)."
    )
    console.print(state)
    saved = save_results("realtime_latency", {"modes": figures, "settings": state, "load_rate": args.rate})
    chart = bar_chart(
        BENCH_DIR / "realtime_latency.png",
        "OLTP commit -> metric visible in Redis, per trigger",
        [f["trigger"] for f in figures],
        {f"p{q}": [f[f"p{q}_ms"] for f in figures] for q in (50, 90, 99)},
        threshold=1000,
    )
    console.print(f"saved {saved} and {chart}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--modes",
        default="micro-batch,real-time",
        help="micro-batch, real-time (each on an instance of its own), running (the app `instashop spark start` runs)",
    )
    p.add_argument("--rate", type=float, default=1000.0, help="generator row changes per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per mode")
    p.add_argument("--probes-per-second", type=float, default=4.0)
    p.add_argument("--interval", help="trigger interval (default: 0 s micro-batch, 5 min real-time checkpoints)")
    p.add_argument("--watermark", default="10 minutes")
    p.add_argument("--warm-up-seconds", type=float, default=30.0, help="load before measuring (0: none)")
    p.add_argument("--capacity-seconds", type=float, default=60.0, help="0 skips the capacity run")
    args = p.parse_args()
    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url)
    run_id = datetime.now(UTC).strftime("%H%M%S")
    modes = args.modes.split(",")
    try:
        with nullcontext() if "running" in modes else production_app_stopped(settings):
            runs = [measure(settings, client, run_id, mode, args) for mode in modes]
            if args.capacity_seconds:
                console.print("[bold]capacity[/]: catching up from the earliest offsets (micro-batch)")
                capacity_run = next((r for r in runs if r.mode == "micro-batch"), runs[0])
                capacity_run.capacity = capacity(
                    settings, client, run_id, "micro-batch", args.capacity_seconds, args.watermark
                )
    except BrokenRun as err:
        raise SystemExit(f"realtime_latency: {err}; no result is reported for a broken run") from err
    report(runs, args)


@contextmanager
def production_app_stopped(settings: Settings) -> Iterator[None]:
    """One Spark app on the 2 cores, as in production: the running app is stopped while our instances
    are measured (stream_supervisor paused, so that it does not start it again), then restored."""
    job = spark_job(settings)
    if not job.pid():
        yield
        return
    airflow, was_paused = AirflowClient(settings), None
    try:
        was_paused = airflow.is_paused(supervisor.DAG_ID)
        airflow.set_paused(supervisor.DAG_ID, True)
    except AirflowApiError as err:
        console.print(f"[yellow]{supervisor.DAG_ID} not paused, it may start the app meanwhile: {err}[/]")
    console.print("stopping the running Spark app until the measurements are done")
    job.stop()
    try:
        yield
    finally:
        job.start()
        if was_paused is False:
            airflow.set_paused(supervisor.DAG_ID, False)


if __name__ == "__main__":
    main()
