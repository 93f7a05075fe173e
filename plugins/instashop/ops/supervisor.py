"""The stream_supervisor DAG's logic: is each long-running piece of the pipeline healthy, and the cure.

Jobs (the consumer, the Spark app: detached processes of `instashop.ops.jobs`):
- no live process behind its pid file -> `down`: start it;
- alive, but silent (no heartbeat from this very process for `stale_after`) -> `stuck`: stop it
  (SIGTERM, SIGKILL after a timeout) and start it again; a process younger than `startup_grace`
  is `starting` instead, so a slow start is not killed in a loop;
- heartbeating but far behind (consumer-group lag over `max_lag`) -> `degraded`: reported only,
  a restart would not make it faster;
- started `max_starts` times within `starts_window` and down again (a crash loop: a broken
  checkpoint, a bad config) -> not started again until the oldest of those starts ages out
  (action `backoff`), and the task fails with the job's last log lines.
Starting happens under a per-job file lock and after re-reading the pid, so two supervisor runs
(the schedule, a manual run, a test's dag.test()) never start two copies. Tasks only look and act
and end within seconds: the jobs never live inside an Airflow task.

The Debezium connector (Connect REST): FAILED connector or task -> restart endpoint; not
registered -> register; PAUSED -> `degraded` (someone paused it on purpose); the Connect worker
itself unreachable -> `unreachable` (a stack service: `make up` restarts it, we do not).

Every check becomes one row of pipeline_health_checks, which Superset charts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from psycopg2.extras import Json

from instashop.capture.connector import ConnectClient, ConnectError, ConnectorState
from instashop.ops import jobs
from instashop.ops.jobs import Job
from instashop.ops.process import tail, wait_until

log = logging.getLogger(__name__)

DAG_ID = "stream_supervisor"  # the DAG that runs this module (dags/stream_supervisor.py)

# Statuses (pipeline_health_checks.status; the table's CHECK lists the same) and actions.
HEALTHY, STARTING, DEGRADED = "healthy", "starting", "degraded"
STUCK, DOWN, UNREACHABLE = "stuck", "down", "unreachable"
NONE, STARTED, RESTARTED, START_FAILED, REGISTERED = "none", "started", "restarted", "start_failed", "registered"
BACKOFF = "backoff"
STARTS = (STARTED, RESTARTED, START_FAILED)
CONNECTOR = "connector"


class SupervisorError(RuntimeError):
    """A component is down and the supervisor could not bring it back: the task fails with this."""


@dataclass(frozen=True)
class Heartbeat:
    age: float  # seconds since the last beat
    pid: int | None = None  # the process that wrote it, when it says
    details: dict[str, Any] = field(default_factory=dict)
    # False when the beat itself says the work stopped (the Spark query failed, the JVM lingers).
    alive: bool = True


@dataclass(frozen=True)
class Policy:
    # The consumer beats every 5 s; a minute of silence from a live process means it hangs.
    stale_after: float = 60.0
    startup_grace: float = 120.0
    stop_timeout: float = 60.0
    max_lag: int = 50_000
    lock_timeout: float = 30.0
    # A start that dies within this many seconds (bad config, missing jar) counts as failed.
    survive_for: float = 3.0
    max_starts: int = 3
    starts_window: float = 900.0


@dataclass(frozen=True)
class Supervised:
    """A job and how to read its health."""

    job: Job
    heartbeat: Callable[[], Heartbeat | None]
    lag: Callable[[], dict[str, Any]] | None = None  # {"total": int, ...}
    # How often the supervisor started it within policy.starts_window (from pipeline_health_checks).
    recent_starts: Callable[[float], int] | None = None
    policy: Policy = Policy()


@dataclass(frozen=True)
class Check:
    component: str
    status: str
    action: str = NONE
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- jobs -------------------------------------------------------------------------------------


def assess_job(
    pid: int | None, uptime: float | None, heartbeat: Heartbeat | None, lag: int | None, policy: Policy
) -> tuple[str, str]:
    """(status, reason) of a job from what was observed; pure."""
    if pid is None:
        return DOWN, "not running"
    silence = _silence(pid, heartbeat, policy)
    if silence and uptime is not None and uptime < policy.startup_grace:
        return STARTING, f"started {uptime:.0f}s ago, {silence}"
    if silence:
        return STUCK, silence
    if lag is not None and lag > policy.max_lag:
        return DEGRADED, f"{lag} messages behind (limit {policy.max_lag})"
    return HEALTHY, ""


def _silence(pid: int, heartbeat: Heartbeat | None, policy: Policy) -> str | None:
    """Why the process with this pid shows no sign of life, or None when it does."""
    if heartbeat is None or heartbeat.pid not in (None, pid):
        return "no heartbeat from this process"
    if not heartbeat.alive:
        return f"its heartbeat says {heartbeat.details.get('status')}"
    if heartbeat.age > policy.stale_after:
        return f"last heartbeat {heartbeat.age:.0f}s ago"
    return None


def check_job(spec: Supervised) -> Check:
    """Observe one job, heal it if it is down or stuck, and say what was seen and done."""
    job, policy = spec.job, spec.policy
    pid = job.pid()
    uptime = _uptime(job) if pid is not None else None
    details: dict[str, Any] = {"pid": pid, "uptime_s": _round(uptime)}
    heartbeat = _observe(details, "heartbeat", spec.heartbeat)
    lag = _observe(details, "lag", spec.lag) if spec.lag else None
    if lag is not None:
        details["lag"] = lag
    if heartbeat is not None:
        details["heartbeat_age_s"] = _round(heartbeat.age)
        details["heartbeat"] = heartbeat.details
    if pid is not None and "heartbeat_error" in details:
        # Cannot tell stuck from fine without the heartbeat: never restart on missing evidence.
        return Check(job.name, DEGRADED, NONE, details | {"reason": "heartbeat unreadable"})
    status, reason = assess_job(pid, uptime, heartbeat, (lag or {}).get("total"), policy)
    details["reason"] = reason
    counter = spec.recent_starts
    if status in (DOWN, STUCK) and counter is not None:
        starts = _observe(details, "recent_starts", lambda: counter(policy.starts_window))
        if starts is not None and starts >= policy.max_starts:
            details["recent_starts"] = starts
            details["log_tail"] = tail(job.process.log_file, 20)
            return Check(job.name, status, BACKOFF, details)
    action = heal_job(job, status, pid, policy, details)
    return Check(job.name, status, action, details)


def heal_job(job: Job, status: str, seen_pid: int | None, policy: Policy, details: dict[str, Any]) -> str:
    """Start a down job, restart a stuck one; returns the action taken."""
    if status not in (DOWN, STUCK):
        return NONE
    with job_lock(job, policy.lock_timeout):
        if job.pid() != seen_pid:  # another supervisor run acted since we looked
            details["healed_by_other_run"] = job.pid()
            return NONE
        if status == STUCK:
            log.warning("%s (pid %s) is stuck: %s; restarting", job.name, seen_pid, details.get("reason"))
            job.stop(policy.stop_timeout)
        with _without_airflow_environment():
            new_pid = job.start()
    details["new_pid"] = new_pid
    if wait_until(lambda: job.pid() is None, policy.survive_for):
        details["log_tail"] = tail(job.process.log_file, 20)
        log.error("%s exited right after start:\n%s", job.name, details["log_tail"])
        return START_FAILED
    log.info("%s %s (pid %s)", job.name, "restarted" if status == STUCK else "started", new_pid)
    return RESTARTED if status == STUCK else STARTED


@contextmanager
def job_lock(job: Job, timeout: float) -> Iterator[None]:
    """An exclusive flock next to the job's pid file; released when the holder exits, even by SIGKILL.

    Popen closes inherited descriptors, so the started job does not keep holding it.
    """
    path = job.process.pid_file.with_name(f"{job.name}.supervisor.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        if not wait_until(lambda: _try_lock(handle), timeout, 0.2):
            raise SupervisorError(f"{job.name}: {path} stayed locked by another supervisor run for {timeout:.0f}s")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _without_airflow_environment() -> Iterator[None]:
    """Jobs inherit os.environ: keep Airflow's secrets (JWT secret, metadata DB, connections) and task
    context out of a job started from a task."""
    airflow = {k: v for k, v in os.environ.items() if k.lstrip("_").startswith("AIRFLOW")}
    for key in airflow:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(airflow)


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _uptime(job: Job) -> float | None:
    """Seconds since the job started: its pid file is written right after the process starts."""
    try:
        return max(0.0, time.time() - job.process.pid_file.stat().st_mtime)
    except FileNotFoundError:
        return None


def _observe(details: dict[str, Any], name: str, read: Callable[[], Any]) -> Any:
    """read(), or None with the error in details: one unreachable source must not hide the others."""
    try:
        return read()
    except Exception as err:
        details[f"{name}_error"] = f"{type(err).__name__}: {err}"[:500]
        log.warning("cannot read %s: %s", name, err)
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- heartbeats -------------------------------------------------------------------------------


def dwh_heartbeat(conn, component: str) -> Heartbeat | None:
    """The component's row of pipeline_heartbeats (written by the consumer), aged by the DB clock."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM now() - heartbeat_at)::float8, details FROM pipeline_heartbeats "
            "WHERE component = %s",
            (component,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    age, details = row
    pid = details.get("pid") if isinstance(details, dict) else None
    return Heartbeat(age, pid if isinstance(pid, int) else None, details or {})


def redis_heartbeat(client, prefix: str | None = None) -> Heartbeat | None:
    """The Spark app's progress heartbeat in Redis (instashop.live.metrics), aged by our clock."""
    from instashop.live import metrics as live_metrics

    fields = live_metrics.read_heartbeat(client, prefix or live_metrics.PREFIX)
    if fields is None or fields.get("age_seconds") is None:
        return None
    pid = fields.get("pid")
    alive = fields.get("status") not in ("failed", "stopped")
    return Heartbeat(float(fields["age_seconds"]), int(pid) if pid and pid.isdigit() else None, fields, alive)


# --- the Debezium connector -------------------------------------------------------------------


def assess_connector(state: ConnectorState) -> tuple[str, str]:
    """(status, action to take) from the Connect REST status; pure."""
    if state.connector == "MISSING":
        return DOWN, REGISTERED
    if state.healthy:
        return HEALTHY, NONE
    if state.connector == "PAUSED":
        return DEGRADED, NONE
    if state.connector == "RESTARTING" or "RESTARTING" in state.tasks:
        return STARTING, NONE
    # FAILED or UNASSIGNED connector or task, or a running connector without tasks.
    return DOWN, RESTARTED


def check_connector(client: ConnectClient) -> Check:
    try:
        state = client.state()
    except ConnectError as err:
        return Check(CONNECTOR, UNREACHABLE, NONE, {"error": str(err)[:500]})
    status, action = assess_connector(state)
    details: dict[str, Any] = {"connector": state.connector, "tasks": state.tasks}
    if state.trace:
        details["trace"] = state.trace.splitlines()[0][:500]
    try:
        if action == RESTARTED:
            log.warning("connector %s, tasks %s: restarting", state.connector, state.tasks)
            client.restart()
        elif action == REGISTERED:
            log.warning("connector is not registered: registering it")
            client.register()
    except ConnectError as err:
        details["action_error"] = str(err)[:500]
        action = START_FAILED
    return Check(CONNECTOR, status, action, details)


# --- recording ----------------------------------------------------------------------------------


def recent_starts(conn, component: str, within: float) -> int:
    """How many times the supervisor started or restarted the component in the last `within` seconds."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pipeline_health_checks WHERE component = %s AND action = ANY(%s) "
            "AND checked_at > now() - make_interval(secs => %s)",
            (component, list(STARTS), within),
        )
        return cur.fetchone()[0]


def record(conn, checks: list[Check], run_id: str | None = None) -> None:
    with conn, conn.cursor() as cur:
        for check in checks:
            cur.execute(
                "INSERT INTO pipeline_health_checks (component, status, action, details, run_id) "
                "VALUES (%s, %s, %s, %s, %s)",
                (check.component, check.status, check.action, Json(check.details, dumps=_dumps), run_id),
            )


def raise_if_unhealed(check: Check) -> None:
    """Fail the task when a component stays down: the DAG run turns red where operators look."""
    if check.action == BACKOFF:
        raise SupervisorError(
            f"{check.component} crash-loops: started {check.details.get('recent_starts')} times lately and down again;"
            f" not restarting it for now. Last log lines:\n{check.details.get('log_tail')}"
        )
    if check.action == START_FAILED or check.status == UNREACHABLE:
        raise SupervisorError(f"{check.component} is {check.status} and could not be healed: {check.details}")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


# --- what is supervised -----------------------------------------------------------------------


def job_names() -> list[str]:
    """The supervised jobs: the consumer and the Spark live-metrics app."""
    return ["consumer", "spark"]


def supervise_job(name: str, run_id: str | None = None) -> dict[str, Any]:
    """One job's check, healed and recorded: the body of a stream_supervisor task."""
    from instashop.ops import airflow_connections as conns
    from instashop.settings import load_settings

    settings = load_settings()  # where the jobs' pid files, logs and executables are
    with conns.postgres(conns.DWH_MAINTAINER) as dwh:
        spec = _SPECS[name](settings, dwh)
        spec = replace(spec, recent_starts=lambda within: recent_starts(dwh, spec.job.name, within))
        check = check_job(spec)
        record(dwh, [check], run_id)
    log.info("%s: %s, action %s, %s", check.component, check.status, check.action, check.details)
    raise_if_unhealed(check)
    return check.as_dict()


def supervise_connector(run_id: str | None = None) -> dict[str, Any]:
    from instashop.ops import airflow_connections as conns
    from instashop.settings import load_settings

    check = check_connector(ConnectClient(load_settings()))
    with conns.postgres(conns.DWH_MAINTAINER) as dwh:
        record(dwh, [check], run_id)
    log.info("%s: %s, action %s, %s", check.component, check.status, check.action, check.details)
    raise_if_unhealed(check)
    return check.as_dict()


def supervise_replication_slot(run_id: str | None = None) -> dict[str, Any]:
    """The Debezium slot's check, recorded; the task fails while the slot is gone or lost."""
    from instashop.ops import airflow_connections as conns
    from instashop.ops import replication_slot

    with conns.postgres(conns.OLTP_READ) as shop:
        check = replication_slot.check_slot(shop, replication_slot.connector_slot())
    with conns.postgres(conns.DWH_MAINTAINER) as dwh:
        record(dwh, [check], run_id)
    log.info("%s: %s, %s", check.component, check.status, check.details)
    if check.status == DOWN:
        raise SupervisorError(check.details["reason"])
    return check.as_dict()


def _consumer_spec(settings, dwh) -> Supervised:
    from instashop.capture.connector import CDC_TOPIC_PATTERN
    from instashop.ingest.consumer import HEARTBEAT_COMPONENT, ConsumerOptions
    from instashop.ops import airflow_connections as conns
    from instashop.ops.kafka_lag import consumer_group_lag

    def lag() -> dict[str, Any]:
        return asdict(consumer_group_lag(conns.kafka_admin(), ConsumerOptions().group_id, CDC_TOPIC_PATTERN))

    return Supervised(jobs.consumer_job(settings), lambda: dwh_heartbeat(dwh, HEARTBEAT_COMPONENT), lag)


def _spark_spec(settings, dwh) -> Supervised:
    from instashop.ops import airflow_connections as conns

    redis = conns.redis_client()
    # The JVM, the Kafka source and the first batch take a while on a small machine.
    return Supervised(jobs.spark_job(settings), lambda: redis_heartbeat(redis), policy=Policy(startup_grace=240))


_SPECS: dict[str, Callable[[Any, Any], Supervised]] = {"consumer": _consumer_spec, "spark": _spark_spec}
