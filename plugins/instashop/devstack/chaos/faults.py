"""The faults of the soak (SIGKILL a job or a stack service, restart PostgreSQL) and how each is brought
back the production way and timed until its data paths flow again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2

from instashop.devstack import manager
from instashop.devstack.chaos.plan import ChaosConfig
from instashop.devstack.chaos.probes import Probes
from instashop.devstack.chaos.report import FaultResult, format_seconds
from instashop.devstack.kafka import KafkaBroker, KafkaConnect
from instashop.devstack.service import Service
from instashop.ops import jobs, supervisor
from instashop.ops.airflow_api import AirflowApiError, AirflowClient
from instashop.ops.process import wait_until
from instashop.settings import Settings

log = logging.getLogger(__name__)

# How long a supervised fault's report waits for the supervisor's run to record what it did.
SUPERVISOR_RECORD_TIMEOUT = 120.0
STACK_SETTLE = 20.0  # seconds a restarted stack must stay healthy before it counts as back


@dataclass(frozen=True)
class Fault:
    name: str  # what is done, for the report
    inject: Callable[[], object]  # its return value (a killed pid, say) is ignored
    restart: Callable[[], str]  # brings it back the production way; says how
    healthy: Callable[[], bool]
    paths: Mapping[str, Callable[[float], bool]]  # data path name -> "a change after t came through"
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


def kill_service(service: Service, timeout: float = 60.0) -> None:
    """SIGKILL a stack service, then wait until supervisord has started a new one or its port is free:
    a big JVM under load can take a while to let go of its sockets after its command line is gone."""
    killed = service.kill()
    if not wait_until(lambda: service.pid() not in (None, killed) or not service.port_taken(), timeout):
        log.warning("%s: port %s still taken %.0f s after SIGKILL", service.name, service.port, timeout)


class FaultInjector:
    """Breaks one piece at a time and times how it comes back (the soak's schedule calls `apply`)."""

    def __init__(
        self, settings: Settings, config: ChaosConfig, probes: Probes, airflow: AirflowClient, started: float
    ) -> None:
        self.settings, self.config, self.probes, self.airflow = settings, config, probes, airflow
        self.started = started  # the soak's start: log lines and results say seconds into the soak

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
                self.left_to_the_process_manager,
                p.connector_healthy,
                dwh_path,
            ),
            "kafka": Fault(
                "SIGKILL Kafka broker",
                lambda: kill_service(KafkaBroker(settings)),
                self.left_to_the_process_manager,
                p.broker_accepts_produce,
                {"DWH": p.dwh_path_after, "Redis": p.spark_path_after},
            ),
            "postgres": Fault(
                "restart both PostgreSQL clusters (shop and warehouse)",
                lambda: manager.down(settings, ["postgres-shop", "postgres-dwh"]),
                self.restart_databases,
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
        self._await_recovery(fault, watch, deadline=at + self.config.recovery_timeout)
        watch.stop()
        self._record_recovery(result, watch, at, pids)
        self._record_supervisor(result, fault, at)
        log.info(
            "%s: healthy after %s, recovered after %s (%s)",
            fault.name,
            format_seconds(result.healthy_s),
            format_seconds(result.recovery_s),
            "; ".join(result.notes),
        )
        return result

    def _await_recovery(self, fault: Fault, watch: Recovery, deadline: float) -> None:
        """Until the piece is back or the deadline; a stack service that stopped meanwhile is started again."""
        while not watch.recovered() and time.time() < deadline:
            if fault.supervised is None and self.stack_service_given_up():
                log.warning("supervisord gave up on a stack service: instashop stack up again")  # `make up` again
                try:
                    self.restart_stack()
                except manager.StackError as err:
                    log.error("instashop stack up failed: %s", err)
            time.sleep(1)

    def _record_recovery(self, result: FaultResult, watch: Recovery, at: float, pids: dict[str, int | None]) -> None:
        """How long the piece took to be healthy and to carry data again, counted from `at` (the kill), and
        which stack services came back or stayed down."""
        if watch.healthy_since is not None:
            result.healthy_s = round(watch.healthy_since - at, 1)
        if watch.recovered() and watch.healthy_since is not None:
            result.recovery_s = round(max(watch.healthy_since, *watch.flowing.values()) - at, 1)
        result.notes += [f"{path} flowing after {t - at:.0f} s" for path, t in watch.flowing.items()]
        now_pids = self.service_pids()
        if started := [name for name, pid in now_pids.items() if pid not in (None, pids.get(name))]:
            result.notes.append(f"services started again: {', '.join(started)}")
        if down := [name for name, pid in now_pids.items() if pid is None]:
            result.notes.append(f"services down: {', '.join(down)}")

    def _record_supervisor(self, result: FaultResult, fault: Fault, at: float) -> None:
        """Which supervisor run restarted a supervised job, and every supervisor action since the kill."""
        if fault.supervised:
            # A job back within seconds (the consumer rejoins its group at once) can be flowing before
            # the supervisor's run has recorded the restart it made: wait for the record.
            wait_until(lambda: self._supervisor_acted(fault.supervised, at), SUPERVISOR_RECORD_TIMEOUT, 2.0)
        actions = self.supervisor_actions(at)
        if fault.supervised:
            runs = [run for component, _, _, run in actions if component == fault.supervised]
            result.restarted_by = f"{supervisor.DAG_ID} ({runs[0]} run)" if runs else "nobody"
        result.notes += [f"supervisor: {c} {status} -> {action} ({run} run)" for c, status, action, run in actions]

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

    def left_to_the_process_manager(self) -> str:
        """Nothing: supervisord starts a killed service again by itself. A supervisor run follows for
        the connector, whose tasks die with the Connect worker."""
        self.trigger_supervisor()
        return f"supervisord + {supervisor.DAG_ID}"

    def restart_databases(self) -> str:
        """What an operator does after stopping the databases: start them again, nothing else;
        Airflow's components, which exit without their database, are supervisord's to bring back."""
        manager.up(self.settings, ["postgres-shop", "postgres-dwh"])
        self.trigger_supervisor()
        return f"instashop stack up postgres-shop postgres-dwh; supervisord + {supervisor.DAG_ID}"

    def restart_stack(self) -> str:
        """What an operator runs after a crash (`instashop stack up`: starts every service that is not
        running, in order), then a supervisor run for the jobs and the connector."""
        manager.up(self.settings)
        self.trigger_supervisor()
        return f"instashop stack up + {supervisor.DAG_ID}"

    def stack_service_given_up(self) -> bool:
        return any(service.given_up() for service in manager.select(self.settings))

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
