"""The soak itself: the generator load, the preflight, the fault schedule and the final checks, in order."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import redis
from rich.console import Console

from instashop.devstack import generator
from instashop.devstack.chaos.checks import FinalChecks
from instashop.devstack.chaos.dead_letters import DeadLetters
from instashop.devstack.chaos.faults import FaultInjector
from instashop.devstack.chaos.plan import POISON, ChaosConfig, load_config, schedule
from instashop.devstack.chaos.probes import Probes
from instashop.devstack.chaos.report import Report, cells_table, diff_table, fault_table, verdict
from instashop.ops import jobs, supervisor
from instashop.ops.airflow_api import AirflowClient
from instashop.ops.process import wait_until
from instashop.settings import Settings

log = logging.getLogger(__name__)
# Supervisor starts a soak costs each job: its own kill, and for the consumer the broker's too (it
# exits when its items stay undelivered for 30 s).
SOAK_STARTS = {"consumer": 2, "spark": 1}


# --- the soak -------------------------------------------------------------------------------------


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
        self.dead_letters = DeadLetters(settings, self.report)

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
        baseline = self.dead_letters.dlq_positions()
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
        checks = FinalChecks(self.settings, self.config, self.redis, self.report, self.started)
        checks.check_dwh()
        checks.check_live(stopped)
        self.dead_letters.check_dlq(baseline)
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
        injector = FaultInjector(self.settings, self.config, self.probes, self.airflow, self.started)
        faults = injector.faults()
        for offset, step in schedule(self.config.duration, self.config.faults):
            wait = self.started + offset - time.time()
            if wait > 0:
                time.sleep(wait)
            if step == POISON:
                self.dead_letters.inject_poison(self.started)
            else:
                self.report.faults.append(injector.apply(step, faults[step]))

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


class ChaosError(RuntimeError):
    pass


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
