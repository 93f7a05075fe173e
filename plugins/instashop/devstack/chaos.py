"""`instashop chaos`: the fault-injection soak (issue 7) of a running pipeline (`make demo`).

While the generator writes shop traffic at a steady rate, a schedule breaks one piece at a time:
SIGKILL of the consumer, of the Spark app (driver and JVM), of the Kafka Connect worker and of the
Kafka broker, then a restart of PostgreSQL (OLTP and DWH share the cluster); mid-soak it also puts
a few poison messages on a CDC topic. Each piece comes back the way it would in production: the
jobs through a `stream_supervisor` run triggered over Airflow's REST API (the minute schedule is
the fallback), the stack services through the stack's own `up` (what an operator runs after a crash:
it starts whatever is not running), the connector's tasks through the supervisor again.

Recovery time of a fault = from the kill until the piece is healthy again AND a change committed
after the kill has come out at the end of its data path (a shop session in the DWH; a Spark batch
over newer events in Redis).

At the end, with the generator stopped and everything drained: the DWH must equal the OLTP truth
per event type and day (counts and amount sums), Redis must equal the DWH in every figure of every
complete 1-minute window of the soak (its load deletes nothing, so none may be lower in the DWH), and
the DLQ (topic and table) must hold exactly the poison injected.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import psycopg2
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from instashop import kafka_auth
from instashop.capture import topics
from instashop.capture.connector import CDC_TOPIC_PATTERN, ConnectClient, ConnectError
from instashop.devstack import generator, manager
from instashop.devstack.generator.lifecycle import LifecycleRates
from instashop.devstack.kafka import KafkaBroker, KafkaConnect
from instashop.devstack.service import Service
from instashop.ingest.consumer import HEARTBEAT_COMPONENT, ConsumerOptions
from instashop.live import metrics as live_metrics
from instashop.ops import jobs, supervisor
from instashop.ops.airflow_api import AirflowApiError, AirflowClient
from instashop.ops.process import wait_until
from instashop.settings import Settings
from instashop.warehouse import reconciliation

log = logging.getLogger(__name__)
# How long a supervised fault's report waits for the supervisor's run to record what it did.
SUPERVISOR_RECORD_TIMEOUT = 120.0

FAULTS = ("consumer", "spark", "connect", "kafka", "postgres")
POISON = "poison"
POISON_TOPIC = "instashop.public.transactions"
PROBE_TOPIC = "instashop.chaos.probe"  # outside the CDC pattern: nobody consumes it
FRESH = 15.0  # seconds: a heartbeat older than this is not "healthy again"
STACK_SETTLE = 20.0  # seconds a restarted stack must stay healthy before it counts as back
# Supervisor starts a soak costs each job: its own kill, and for the consumer the broker's too (it
# exits when its items stay undelivered for 30 s).
SOAK_STARTS = {"consumer": 2, "spark": 1}


@dataclass(frozen=True)
class ChaosConfig:
    duration: float = 420.0  # seconds of load at least; faults are spread over it
    rate: float = 100.0  # generator events per second
    faults: tuple[str, ...] = FAULTS
    recovery_timeout: float = 300.0  # per fault
    drain_timeout: float = 300.0  # for the DWH, then again for Redis, after the generator stopped
    seed: int | None = None


# --- the plan (pure) ------------------------------------------------------------------------------


def schedule(duration: float, faults: Sequence[str]) -> list[tuple[float, str]]:
    """(seconds into the soak, step): the faults evenly spread, the poison after the first half of them."""
    half = (len(faults) + 1) // 2
    steps = [*faults[:half], POISON, *faults[half:]]
    return [(round(duration * (k + 1) / (len(steps) + 1), 1), step) for k, step in enumerate(steps)]


def poison_messages(tag: str) -> dict[str, tuple[bytes, bytes]]:
    """name -> (key, value): a well-formed Debezium key each, so the value alone is what makes it poison."""

    def key(name: str) -> bytes:
        return json.dumps({"transaction_id": 1, "poison": f"{tag}-{name}"}).encode()

    def envelope(table: str, after: dict[str, Any]) -> bytes:
        source = {"table": table, "schema": "public", "lsn": 1, "ts_ms": 0, "snapshot": "false"}
        return json.dumps({"before": None, "after": after, "op": "c", "source": source}).encode()

    row = {
        "transaction_id": 1,
        "customer_id": 1,
        "session_id": None,
        "payment_method": "card",
        "status": "pending",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    return {
        "invalid-json": (key("invalid-json"), b'{"op": "c", "after": {'),
        "unknown-table": (key("unknown-table"), envelope("unicorns", {"id": 1})),
        "wrong-type": (key("wrong-type"), envelope("transactions", {**row, "total_amount": 12.5})),  # a float
    }


def load_config(config: ChaosConfig) -> generator.GeneratorConfig:
    """The soak's shop traffic: the usual lifecycle (payments settle, fail, are refunded; prices change)
    but no deletes. Redis counts what was placed and the DWH holds what still exists, so with nothing
    deleted every live figure must equal the DWH's: a row counted twice after a kill is a difference."""
    lifecycle = replace(LifecycleRates(), delete_failed=0.0, delete_bounce=0.0)
    return generator.GeneratorConfig(rate=config.rate, seed=config.seed, lifecycle=lifecycle)


def live_differences(
    in_redis: dict[int, dict[str, Any]], in_dwh: dict[int, dict[str, Any]], window: reconciliation.Window
) -> list[reconciliation.LiveMismatch]:
    """Redis against the DWH over the soak: every figure equal (its load deletes nothing)."""
    return reconciliation.diff_live(in_redis, in_dwh, window, exact=True)


# --- the report -----------------------------------------------------------------------------------


@dataclass
class FaultResult:
    component: str  # one of FAULTS
    fault: str  # what was done, e.g. "SIGKILL consumer"
    at_s: float  # seconds into the soak
    restarted_by: str
    healthy_s: float | None = None  # the piece itself is back
    recovery_s: float | None = None  # ... and a change made after the fault came out of its data path
    notes: list[str] = field(default_factory=list)

    @property
    def recovered(self) -> bool:
        return self.recovery_s is not None


@dataclass
class Report:
    started_at: str
    config: dict[str, Any]
    load_s: float = 0.0
    total_s: float = 0.0
    generator: dict[str, Any] = field(default_factory=dict)
    faults: list[FaultResult] = field(default_factory=list)
    poison: list[dict[str, Any]] = field(default_factory=list)
    dwh: dict[str, Any] = field(default_factory=dict)  # cells compared, differing cells
    live: dict[str, Any] = field(default_factory=dict)  # windows compared, differing figures
    dlq: dict[str, Any] = field(default_factory=dict)  # expected and found source offsets
    end_health: dict[str, bool] = field(default_factory=dict)  # every piece, once the checks are done
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def verdict(report: Report) -> list[str]:
    """Every reason the soak failed; empty when the pipeline took every fault without a difference."""
    problems = [f"{f.fault} did not recover" for f in report.faults if not f.recovered]
    if report.generator.get("error"):
        problems.append(f"the generator died: {report.generator['error']}")
    if report.dwh.get("diff") or not report.dwh.get("cells"):
        problems.append(f"DWH differs from the OLTP truth in {len(report.dwh.get('diff', []))} (type, day) cells")
    if report.live.get("diff") or not report.live.get("windows"):
        problems.append(f"Redis differs from the DWH in {len(report.live.get('diff', []))} window figures")
    expected = {tuple(e) for e in report.dlq.get("expected", [])}
    if not expected:
        problems.append("no poison message was injected")
    problems += [f"{piece} is not healthy at the end" for piece, healthy in report.end_health.items() if not healthy]
    for where in ("table", "topic"):
        if {tuple(e) for e in report.dlq.get(where, [])} != expected:
            problems.append(f"the DLQ {where} does not hold exactly the poison injected")
    return problems


def fault_table(report: Report) -> Table:
    table = Table("fault", "at", "restarted by", "healthy after", "recovery", "notes", title="chaos soak: faults")
    for f in report.faults:
        table.add_row(
            f.fault,
            f"{f.at_s:.0f} s",
            f.restarted_by,
            _seconds(f.healthy_s),
            _seconds(f.recovery_s) if f.recovered else "[red]not recovered[/]",
            "; ".join(f.notes),
        )
    return table


def diff_table(report: Report) -> Table:
    table = Table("check", "compared", "differences", "result", title="chaos soak: final diff (must be zero)")
    expected = {tuple(e) for e in report.dlq.get("expected", [])}
    rows = [
        ("DWH = OLTP per event type and day", f"{report.dwh.get('cells', 0)} cells", len(report.dwh.get("diff", []))),
        (
            "Redis = DWH per minute of the soak",
            f"{report.live.get('windows', 0)} windows",
            len(report.live.get("diff", [])),
        ),
    ]
    for where in ("table", "topic"):
        found = {tuple(e) for e in report.dlq.get(where, [])}
        rows.append((f"DLQ {where} = poison injected", f"{len(expected)} messages", len(found ^ expected)))
    unhealthy = [piece for piece, healthy in report.end_health.items() if not healthy]
    rows.append(("every piece healthy at the end", f"{len(report.end_health)} pieces", len(unhealthy)))
    for check, compared, differences in rows:
        result = "[green]ok[/]" if differences == 0 else "[red]DIFFERS[/]"
        table.add_row(check, compared, str(differences), result)
    return table


def cells_table(report: Report) -> Table:
    columns = ("event type", "day", "OLTP rows", "DWH rows", "OLTP amount", "DWH amount", "diff")
    table = Table(*columns, title="chaos soak: DWH vs OLTP per event type and day")
    for cell in report.dwh.get("cells_detail", []):
        same = (cell["oltp_rows"], cell["oltp_amount"]) == (cell["dwh_rows"], cell["dwh_amount"])
        values = [cell["type"], cell["day"], f"{cell['oltp_rows']:,}", f"{cell['dwh_rows']:,}"]
        table.add_row(*values, cell["oltp_amount"], cell["dwh_amount"], "[green]0[/]" if same else "[red]differs[/]")
    return table


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


# --- probes: each answers now, never raises (the thing it asks may be down) ---------------------------


def _kafka(settings: Settings) -> dict[str, Any]:
    """The soak's own Kafka client (probes, poison, reading the DLQ back): the admin principal, as a
    test's set-up; the components it checks run as their own."""
    return kafka_auth.client_config(settings, kafka_auth.ADMIN)


def _query_one(dsn: str, sql: str, params: tuple = ()) -> tuple | None:
    try:
        with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()
    except psycopg2.Error:
        return None


def _naive_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Probes:
    settings: Settings
    redis_client: Any

    def dwh_answers(self) -> bool:
        return _query_one(self.settings.dwh_dsn, "SELECT 1") == (1,)

    def dwh_path_after(self, since: float) -> bool:
        """A shop session that ended (and so committed) after `since` is in the DWH."""
        row = _query_one(self.settings.dwh_readonly_dsn, 'SELECT max("timestamp") FROM customer_sessions')
        return bool(row and row[0] and row[0] > _naive_utc(since))

    def consumer_healthy(self) -> bool:
        pid = jobs.consumer_job(self.settings).pid()
        row = _query_one(
            self.settings.dwh_readonly_dsn,
            "SELECT extract(epoch FROM now() - heartbeat_at)::float8, details->>'pid' FROM pipeline_heartbeats "
            "WHERE component = %s",
            (HEARTBEAT_COMPONENT,),
        )
        return bool(pid and row and row[1] == str(pid) and row[0] < FRESH)

    def spark_beat(self) -> dict[str, Any]:
        """The Spark app's heartbeat if it comes from the running job and is fresh, else {}."""
        pid = jobs.spark_job(self.settings).pid()
        try:
            beat = live_metrics.read_heartbeat(self.redis_client) or {}
        except redis.RedisError:
            return {}
        fresh = beat.get("status") == "running" and (beat.get("age_seconds") or FRESH) < FRESH
        return beat if pid and fresh and beat.get("pid") == str(pid) else {}

    def spark_healthy(self) -> bool:
        return bool(self.spark_beat())

    def spark_path_after(self, since: float) -> bool:
        """The running app has processed an event that happened after `since`."""
        last = self.spark_beat().get("last_event_time")
        return bool(last) and datetime.fromisoformat(last).timestamp() > since

    def stack_healthy(self) -> bool:
        """Every service of the stack runs and answers (`instashop stack status`)."""
        return all(service.healthy for service in manager.status(self.settings))

    def connector_healthy(self) -> bool:
        try:
            return ConnectClient(self.settings).state().healthy
        except ConnectError:
            return False

    def broker_accepts_produce(self) -> bool:
        delivered: list[bool] = []
        producer = Producer({**_kafka(self.settings), "message.timeout.ms": 3000, "log_level": 0})
        producer.produce(PROBE_TOPIC, b"probe", on_delivery=lambda err, _: delivered.append(err is None))
        producer.flush(5)
        return delivered == [True]


# --- the soak -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str  # what is done, for the report
    inject: Callable[[], None]
    restart: Callable[[], str]  # brings it back the production way; says how
    healthy: Callable[[], bool]
    paths: dict[str, Callable[[float], bool]]  # data path name -> "a change after t came through"
    supervised: str | None = None  # the stream_supervisor job that restarts it; None: a stack service


class Recovery(threading.Thread):
    """Watches a fault's piece from the kill on, every second, beside the (blocking) restart: since when
    it is healthy without a break, and when each data path first carried a change made after the kill."""

    def __init__(self, fault: Fault, since: float, settle: float) -> None:
        super().__init__(name=f"watch {fault.name}", daemon=True)
        self.fault, self.since, self.settle = fault, since, settle
        self.healthy_since: float | None = None
        self.flowing: dict[str, float] = {}
        self._stop_watching = threading.Event()

    def run(self) -> None:
        while not self._stop_watching.is_set():
            try:
                self.look()
            except Exception as err:  # a probe that breaks must not end the watch
                log.warning("watching %s: %s", self.fault.name, err)
            self._stop_watching.wait(1.0)

    def look(self) -> None:
        now = time.time()
        self.healthy_since = (self.healthy_since or now) if self.fault.healthy() else None
        for path, flowing in self.fault.paths.items():
            if path not in self.flowing and flowing(self.since):
                self.flowing[path] = time.time()

    def recovered(self) -> bool:
        """Healthy for `settle` seconds on end, and every data path flowing."""
        healthy_since = self.healthy_since
        stable = healthy_since is not None and time.time() - healthy_since >= self.settle
        return stable and len(self.flowing) == len(self.fault.paths)

    def stop(self) -> None:
        self._stop_watching.set()
        self.join(timeout=30)


class Soak:
    def __init__(self, settings: Settings, config: ChaosConfig) -> None:
        self.settings, self.config = settings, config
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
        self.probes = Probes(settings, self.redis)
        self.airflow = AirflowClient(settings)
        self.started = 0.0
        self.report = Report(datetime.now(UTC).isoformat(timespec="seconds"), asdict(config))
        self._stop_load = threading.Event()
        self._load: dict[str, Any] = {}

    # --- the whole run ---------------------------------------------------------------------------

    def run(self) -> Report:
        began = time.monotonic()
        demo_generator = jobs.generator_job(self.settings)
        demo_was_running = demo_generator.stop()  # only the soak's own load, so the end state is known
        if demo_was_running:
            log.info("stopped the demo generator for the soak; it is started again afterwards")
        try:
            self.soak()
        finally:
            if demo_was_running:
                demo_generator.start()
        self.report.total_s = round(time.monotonic() - began, 1)
        self.report.problems = verdict(self.report)
        return self.report

    def soak(self) -> None:
        baseline = self.dlq_positions()
        load = threading.Thread(target=self._generate, name="chaos-load", daemon=True)
        load.start()  # before the preflight: the Spark app runs a batch only when records arrive
        try:
            self.preflight()
            self.started = time.time()
            self.run_schedule()
            remaining = self.started + self.config.duration - time.time()
            if remaining > 0:
                log.info("all faults done; the load goes on for another %.0f s", remaining)
                time.sleep(remaining)
        finally:
            self._stop_load.set()
            load.join(timeout=120)
        stopped = time.time()
        self.report.load_s = round(stopped - self.started, 1)
        self.report.generator = self._load
        log.info("load stopped after %.0f s of soak: %s", self.report.load_s, self._load)
        self.check_dwh()
        self.check_live(stopped)
        self.check_dlq(baseline)
        self.report.end_health = self.health()
        log.info(
            "at the end: %s",
            ", ".join(f"{k} {'healthy' if v else 'NOT healthy'}" for k, v in self.report.end_health.items()),
        )

    def health_checks(self) -> dict[str, Callable[[], bool]]:
        return {
            "every stack service": self.probes.stack_healthy,
            "DWH": self.probes.dwh_answers,
            "Kafka broker": self.probes.broker_accepts_produce,
            "Debezium connector": self.probes.connector_healthy,
            "consumer": self.probes.consumer_healthy,
            "Spark app": self.probes.spark_healthy,
        }

    def health(self) -> dict[str, bool]:
        return {name: check() for name, check in self.health_checks().items()}

    def preflight(self) -> None:
        """Wait until every piece is healthy (Spark has run a batch): a fault must hit a working pipeline."""
        self.wait_out_crash_loop_guard()
        for name, check in self.health_checks().items():
            if not wait_until(check, self.config.recovery_timeout, 2.0):
                raise ChaosError(f"{name} is not healthy: start the pipeline first (make demo)")
            log.info("preflight: %s healthy", name)

    def wait_out_crash_loop_guard(self) -> None:
        """The supervisor starts a job at most `max_starts` times per window, then backs off. Starts from
        before (a soak just done) must leave room for the soak's own, or a recovery would wait for them."""
        policy = supervisor.Policy()
        for job in supervisor.job_names():
            room = policy.max_starts - SOAK_STARTS.get(job, 1)
            starts = self._start_times(job, policy.starts_window)
            if len(starts) <= room:
                continue
            wait = starts[room] + policy.starts_window - time.time() + 1
            log.warning(
                "%s was started %d times by the supervisor in the last %.0f min (it allows %d): waiting %.0f s "
                "so that the soak's restarts are not taken for a crash loop",
                job,
                len(starts),
                policy.starts_window / 60,
                policy.max_starts,
                wait,
            )
            time.sleep(max(wait, 0))

    def _start_times(self, job: str, within: float) -> list[float]:
        """When the supervisor started the job within the last `within` seconds, newest first (epoch)."""
        with closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT extract(epoch FROM checked_at)::float8 FROM pipeline_health_checks "
                "WHERE component = %s AND action = ANY(%s) AND checked_at > now() - make_interval(secs => %s) "
                "ORDER BY checked_at DESC",
                (job, list(supervisor.STARTS), within),
            )
            return [row[0] for row in cur.fetchall()]

    def run_schedule(self) -> None:
        faults = self.faults()
        for offset, step in schedule(self.config.duration, self.config.faults):
            wait = self.started + offset - time.time()
            if wait > 0:
                time.sleep(wait)
            if step == POISON:
                self.inject_poison()
            else:
                self.report.faults.append(self.apply(step, faults[step]))

    def _generate(self) -> None:
        config = load_config(self.config)
        try:
            summary = generator.run(self.settings.oltp_dsn, config, show_progress=False, stop=self._stop_load)
        except generator.GeneratorError as err:
            log.error("the generator died: %s", err)
            self._load["error"] = str(err)
            return
        self._load.update(
            run_id=summary.run_id,
            sessions=summary.session_count,
            row_changes=summary.row_changes,
            events_per_s=round(summary.per_second(summary.row_changes), 1),
            reconnects=summary.reconnects,  # lost connections ridden out (the PostgreSQL restart)
        )

    # --- faults -----------------------------------------------------------------------------------

    def faults(self) -> dict[str, Fault]:
        p, settings = self.probes, self.settings
        dwh_path = {"DWH": p.dwh_path_after}
        return {
            "consumer": Fault(
                "SIGKILL consumer",
                jobs.consumer_job(settings).kill,
                self.trigger_supervisor,
                p.consumer_healthy,
                dwh_path,
                supervised="consumer",
            ),
            "spark": Fault(
                "SIGKILL Spark app (driver + JVM)",
                jobs.spark_job(settings).kill,
                self.trigger_supervisor,
                p.spark_healthy,
                {"Redis": p.spark_path_after},
                supervised="spark",
            ),
            "connect": Fault(
                "SIGKILL Kafka Connect worker",
                lambda: kill_service(KafkaConnect(settings)),
                self.restart_stack,
                p.connector_healthy,
                dwh_path,
            ),
            "kafka": Fault(
                "SIGKILL Kafka broker",
                lambda: kill_service(KafkaBroker(settings)),
                self.restart_stack,
                p.broker_accepts_produce,
                {"DWH": p.dwh_path_after, "Redis": p.spark_path_after},
            ),
            "postgres": Fault(
                "restart PostgreSQL (OLTP + DWH)",
                lambda: manager.down(settings, ["postgres"]),
                self.restart_stack,
                # Airflow's scheduler, dag-processor and triggerer exit when their database goes away.
                lambda: p.dwh_answers() and p.stack_healthy(),
                dwh_path,
            ),
        }

    def apply(self, component: str, fault: Fault) -> FaultResult:
        pids = self.service_pids()
        at = time.time()
        log.info("[%.0f s] %s", at - self.started, fault.name)
        fault.inject()
        # A stack service must stay up a while: Airflow's scheduler, for one, exits on a lost database
        # only once its running tasks are done, well after `stack up` found it running.
        watch = Recovery(fault, at, settle=0.0 if fault.supervised else STACK_SETTLE)
        watch.start()
        result = FaultResult(component, fault.name, round(at - self.started, 1), "")
        try:
            result.restarted_by = fault.restart()
        except (manager.StackError, OSError) as err:  # then nothing brings it back: it will not recover
            log.error("%s: the restart failed: %s", fault.name, err)
            result.restarted_by, result.notes = "restart failed", [str(err).splitlines()[0]]
        deadline = at + self.config.recovery_timeout
        while not watch.recovered() and time.time() < deadline:
            if fault.supervised is None and self.stack_service_stopped():
                log.warning("a stack service stopped meanwhile: instashop stack up again")  # `make up` again
                try:
                    self.restart_stack()
                except manager.StackError as err:
                    log.error("instashop stack up failed: %s", err)
            time.sleep(1)
        watch.stop()
        if watch.healthy_since is not None:
            result.healthy_s = round(watch.healthy_since - at, 1)
        if watch.recovered():
            result.recovery_s = round(max(watch.healthy_since, *watch.flowing.values()) - at, 1)
        result.notes += [f"{path} flowing after {t - at:.0f} s" for path, t in watch.flowing.items()]
        now_pids = self.service_pids()
        if started := [name for name, pid in now_pids.items() if pid not in (None, pids.get(name))]:
            result.notes.append(f"services started again: {', '.join(started)}")
        if down := [name for name, pid in now_pids.items() if pid is None]:
            result.notes.append(f"services down: {', '.join(down)}")
        if fault.supervised:
            # A job back within seconds (the consumer rejoins its group at once) can be flowing before
            # the supervisor's run has recorded the restart it made: wait for the record.
            wait_until(lambda: self._supervisor_acted(fault.supervised, at), SUPERVISOR_RECORD_TIMEOUT, 2.0)
        actions = self.supervisor_actions(at)
        if fault.supervised:
            runs = [run for component, _, _, run in actions if component == fault.supervised]
            result.restarted_by = f"{supervisor.DAG_ID} ({runs[0]} run)" if runs else "nobody"
        result.notes += [f"supervisor: {c} {status} -> {action} ({run} run)" for c, status, action, run in actions]
        log.info(
            "%s: healthy after %s, recovered after %s (%s)",
            fault.name,
            _seconds(result.healthy_s),
            _seconds(result.recovery_s),
            "; ".join(result.notes),
        )
        return result

    def service_pids(self) -> dict[str, int | None]:
        return {service.name: service.pid() for service in manager.select(self.settings)}

    def trigger_supervisor(self) -> str:
        """A stream_supervisor run now, rather than at the next minute; the schedule remains the fallback.

        Which run actually restarted the job is read back from pipeline_health_checks."""
        for attempt in range(3):  # right after a PostgreSQL restart the api-server may need a moment
            try:
                run_id = self.airflow.trigger(supervisor.DAG_ID)
            except AirflowApiError as err:
                log.warning("could not trigger %s: %s", supervisor.DAG_ID, err)
                time.sleep(5 * (attempt + 1))
                continue
            log.info("triggered %s run %s", supervisor.DAG_ID, run_id)
            return f"{supervisor.DAG_ID} (REST trigger)"
        return f"{supervisor.DAG_ID} (scheduled run; the trigger failed)"

    def restart_stack(self) -> str:
        """What an operator runs after a crash (`instashop stack up`: starts every service that is not
        running, in order), then a supervisor run for the jobs and the connector."""
        manager.up(self.settings)
        self.trigger_supervisor()
        return f"instashop stack up + {supervisor.DAG_ID}"

    def stack_service_stopped(self) -> bool:
        return any(service.pid() is None for service in manager.select(self.settings))

    def _supervisor_acted(self, component: str, since: float) -> bool:
        return any(c == component for c, *_ in self.supervisor_actions(since))

    def supervisor_actions(self, since: float) -> list[tuple[str, str, str, str]]:
        """What the supervisor did since `since`: (component, status, action, triggered or scheduled run)."""
        rows = []
        try:
            dsn = self.settings.dwh_readonly_dsn
            with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT component, status, action, run_id FROM pipeline_health_checks "
                    "WHERE checked_at >= %s AND action <> 'none' ORDER BY checked_at",
                    (datetime.fromtimestamp(since, UTC),),
                )
                rows = cur.fetchall()
        except psycopg2.Error as err:
            log.warning("pipeline_health_checks unreadable: %s", err)
        kinds = {"manual": "triggered", "scheduled": "scheduled"}  # run ids are <kind>__<time>
        return [(c, status, action, kinds.get((run or "").split("__")[0], "?")) for c, status, action, run in rows]

    # --- poison -----------------------------------------------------------------------------------

    def inject_poison(self) -> None:
        tag = f"chaos-{int(self.started)}"
        producer = Producer(_kafka(self.settings))
        for name, (key, value) in poison_messages(tag).items():

            def delivered(err, message, name=name) -> None:
                if err is None:
                    entry = {"name": name, "topic": message.topic(), "partition": message.partition()}
                    self.report.poison.append(entry | {"offset": message.offset()})

            producer.produce(POISON_TOPIC, key=key, value=value, on_delivery=delivered)
        if producer.flush(30):
            log.error("some poison messages were not delivered")
        names = ", ".join(p["name"] for p in self.report.poison)
        log.info("[%.0f s] injected poison messages into %s: %s", time.time() - self.started, POISON_TOPIC, names)

    def dlq_positions(self) -> dict[str, Any]:
        """Where the DLQ table and topic end before the soak: older dead letters are not the soak's."""
        row = _query_one(self.settings.dwh_readonly_dsn, "SELECT coalesce(max(id), 0) FROM dead_letters")
        consumer = self._dlq_reader()
        try:
            ends = {p: _high(consumer, p) for p in _partitions(consumer, topics.DEAD_LETTERS)}
        finally:
            consumer.close()
        return {"table_id": row[0] if row else 0, "topic_ends": ends}

    def _dlq_reader(self) -> Consumer:
        return Consumer(
            {
                **_kafka(self.settings),
                "group.id": "instashop-chaos",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    # --- final checks -----------------------------------------------------------------------------

    def check_dwh(self) -> None:
        """Wait for the DWH to catch up with the OLTP, then compare every (event type, day) of the soak."""
        day = datetime.fromtimestamp(self.started, UTC).date()
        mismatches: list[reconciliation.Mismatch] = []
        cells = 0
        deadline = time.time() + self.config.drain_timeout
        while True:
            window = reconciliation.Window(datetime.combine(day, clock_time.min), _naive_utc(time.time() + 60))
            try:
                cells, mismatches = self._compare_dwh(window)
            except psycopg2.Error as err:
                log.warning("reconciliation query failed: %s", err)
                cells, mismatches = 0, []
            if cells and not mismatches and self._consumer_lag() == 0:
                break
            if time.time() > deadline:
                break
            time.sleep(5)
        self.report.dwh |= {
            **window.as_dict(),
            "cells": cells,
            "diff": [m.describe() for m in mismatches],
            "consumer_lag": self._consumer_lag(),
        }
        log.info("DWH vs OLTP: %d cells compared, %d differ", cells, len(mismatches))

    def _compare_dwh(self, window: reconciliation.Window) -> tuple[int, list[reconciliation.Mismatch]]:
        with (
            closing(psycopg2.connect(self.settings.oltp_dsn)) as oltp,
            closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as dwh,
        ):
            expected = reconciliation.totals(oltp, reconciliation.OLTP_QUERY, window, aware=True)
            actual = reconciliation.totals(dwh, reconciliation.DWH_QUERY, window, aware=False)
        zero = reconciliation.ZERO
        self.report.dwh["cells_detail"] = [
            {
                "type": kind,
                "day": day.isoformat(),
                "oltp_rows": expected.get((kind, day), zero).rows,
                "dwh_rows": actual.get((kind, day), zero).rows,
                "oltp_amount": str(expected.get((kind, day), zero).amount),
                "dwh_amount": str(actual.get((kind, day), zero).amount),
            }
            for kind, day in sorted(expected.keys() | actual.keys())
        ]
        return len(expected.keys() | actual.keys()), reconciliation.diff(expected, actual)

    def _consumer_lag(self) -> int | None:
        from confluent_kafka.admin import AdminClient

        from instashop.ops.kafka_lag import consumer_group_lag

        try:
            # As the supervisor reads it: the airflow principal may describe the consumer's group.
            admin = AdminClient(kafka_auth.client_config(self.settings, kafka_auth.AIRFLOW))
            return consumer_group_lag(admin, ConsumerOptions().group_id, CDC_TOPIC_PATTERN).total
        except KafkaException:
            return None

    def check_live(self, load_stopped: float) -> None:
        """Redis vs DWH for every minute of the soak (the Spark app ran before it began: all are complete)."""
        start = _ceil_minute(self.started)
        window = reconciliation.Window(_naive_utc(start), _naive_utc(_ceil_minute(load_stopped)))
        mismatches: list[reconciliation.LiveMismatch] = []
        deadline = time.time() + self.config.drain_timeout
        while True:
            try:
                mismatches = self._compare_live(window)
            except (psycopg2.Error, redis.RedisError) as err:
                log.warning("live metrics comparison failed: %s", err)
            if not mismatches or time.time() > deadline:
                break
            time.sleep(5)
        minutes = int((window.end - window.start).total_seconds() // 60)
        self.report.live = {**window.as_dict(), "windows": minutes, "diff": [m.describe() for m in mismatches]}
        log.info("Redis vs DWH: %d minutes compared, %d figures differ", minutes, len(mismatches))

    def _compare_live(self, window: reconciliation.Window) -> list[reconciliation.LiveMismatch]:
        with closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as dwh:
            in_dwh = reconciliation.live_totals_from_dwh(dwh, window)
        in_redis = {
            w["start"]: {f: w[f] for f in reconciliation.LIVE_FIELDS}
            for w in live_metrics.read_windows(self.redis, reconciliation.LIVE_WIDTH, window.start, window.end)
        }
        return live_differences(in_redis, in_dwh, window)

    def check_dlq(self, baseline: dict[str, Any]) -> None:
        """The dead letters since the soak began, in the table and on the topic, by source offset."""
        expected = sorted([p["topic"], p["partition"], p["offset"]] for p in self.report.poison)
        table: list[list[Any]] = []
        deadline = time.time() + 60
        while time.time() < deadline:
            rows = self._dead_letters_after(baseline["table_id"])
            table = sorted([t, p, o] for t, p, o in rows)
            if len(table) >= len(expected):
                break
            time.sleep(2)
        on_topic = self._dlq_topic_after(baseline["topic_ends"])
        self.report.dlq = {
            "expected": expected,
            "table": table,
            "topic": sorted(set(map(tuple, on_topic))),
            "topic_messages": len(on_topic),  # more than distinct: a redelivered batch published it twice
        }
        log.info(
            "DLQ: %d poison injected, %d in dead_letters, %d on the topic", len(expected), len(table), len(on_topic)
        )

    def _dead_letters_after(self, last_id: int) -> list[tuple]:
        with closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as conn, conn.cursor() as cur:
            cur.execute("SELECT topic, kafka_partition, kafka_offset FROM dead_letters WHERE id > %s", (last_id,))
            return cur.fetchall()

    def _dlq_topic_after(self, ends: dict[int, int]) -> list[list[Any]]:
        """The source (topic, partition, offset) of every DLQ message after the baseline."""
        consumer = self._dlq_reader()
        found: list[list[Any]] = []
        try:
            partitions = _partitions(consumer, topics.DEAD_LETTERS)
            targets = {p: _high(consumer, p) for p in partitions}
            consumer.assign([TopicPartition(topics.DEAD_LETTERS, p, ends.get(p, OFFSET_BEGINNING)) for p in partitions])
            remaining = {p for p in partitions if targets[p] > ends.get(p, 0)}
            deadline = time.time() + 60
            while remaining and time.time() < deadline:
                for message in consumer.consume(500, 1.0):
                    if message.error() is not None:
                        continue
                    headers = {k: v.decode() for k, v in message.headers() or []}
                    found.append([headers.get("dlq.topic"), int(headers["dlq.partition"]), int(headers["dlq.offset"])])
                    if message.offset() + 1 >= targets[message.partition()]:
                        remaining.discard(message.partition())
        finally:
            consumer.close()
        return found


class ChaosError(RuntimeError):
    pass


def kill_service(service: Service, timeout: float = 60.0) -> None:
    """SIGKILL a stack service, then wait until its port is free: a big JVM under load can take a while
    to let go of its sockets after its command line is gone (and `up` would then find the port taken)."""
    service.process.kill()
    if not wait_until(lambda: not service.port_taken(), timeout):
        log.warning("%s: port %s still taken %.0f s after SIGKILL", service.name, service.port, timeout)


def _ceil_minute(epoch: float) -> float:
    return -(-epoch // 60) * 60


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    return sorted(meta.partitions) if meta and not meta.error else []


def _high(consumer: Consumer, partition: int) -> int:
    return consumer.get_watermark_offsets(TopicPartition(topics.DEAD_LETTERS, partition), timeout=10)[1]


# --- entry point ----------------------------------------------------------------------------------


def run(settings: Settings, config: ChaosConfig, json_path: Path, console: Console) -> Report:
    """The soak, its tables on the console and its report as JSON."""
    report = Soak(settings, config).run()
    console.print(fault_table(report))
    console.print(cells_table(report))
    console.print(diff_table(report))
    for problem in report.problems:
        console.print(f"[bold red]FAILED:[/] {problem}", highlight=False)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    console.print(f"report written to {json_path}", highlight=False)
    return report
