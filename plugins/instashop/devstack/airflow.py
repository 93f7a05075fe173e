"""Apache Airflow 3.3: api-server, scheduler, dag-processor and triggerer as four detached processes.

All four share AIRFLOW_HOME=var/airflow and the environment built by `airflow_environment`, which
tests running `dag.test()` use too. The metadata database is `airflow` on the stack's Postgres.
Only the api-server, the first of the four in start order, runs `airflow db migrate`. The others
never migrate: without a terminal, Airflow's start-up check (`[database] check_migrations`) makes
them exit with "Database migration required" on an outdated schema, which `up` reports.
Health comes from the api-server's public `/api/v2/monitor/health`, which reports each
component's latest heartbeat in the metadata database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from instashop.devstack.service import Service
from instashop.ops.airflow_connections import airflow_connections
from instashop.ops.process import tail
from instashop.settings import Settings

log = logging.getLogger(__name__)

HEALTHY = "healthy"
MIGRATE_TIMEOUT = 1200.0


def airflow_home(settings: Settings) -> Path:
    return settings.var_dir / "airflow"


def passwords_file(settings: Settings) -> Path:
    return airflow_home(settings) / "simple_auth_manager_passwords.json"


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Environment of every Airflow process: os.environ, AIRFLOW_HOME, the AIRFLOW__* settings and the
    DAGs' connections as AIRFLOW_CONN_* (built from .env; see instashop.airflow_connections)."""
    url = settings.airflow_url.rstrip("/")
    repo = settings.repo_root
    options = {
        "core": {
            "executor": "LocalExecutor",
            # LocalExecutor forks this many workers up front (default 32); our DAGs are short jobs.
            "parallelism": "8",
            "load_examples": "False",
            "dags_folder": str(repo / "dags"),
            # Airflow puts it on sys.path (DAGs `import instashop`); plugins/.airflowignore keeps the
            # plugin manager from exec'ing our package's modules as plugins.
            "plugins_folder": str(repo / "plugins"),
            # Our DAGs are the stack's own operations (supervision, partitions): run them on deploy.
            "dags_are_paused_at_creation": "False",
            "auth_manager": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "simple_auth_manager_users": f"{settings.airflow_admin_user}:admin",
            "simple_auth_manager_passwords_file": str(passwords_file(settings)),
            # Task and trigger workloads talk to the api-server; its default is localhost:8080.
            "execution_api_server_url": f"{url}/execution/",
        },
        "database": {
            "sql_alchemy_conn": "postgresql+psycopg2://" + settings.airflow_db_dsn.split("://", 1)[1],
        },
        "api": {
            "host": "127.0.0.1",  # the default is 0.0.0.0
            "port": str(settings.port("airflow")),
            "base_url": url,
            "secret_key": settings.airflow_api_secret_key,
        },
        # Signs UI/REST tokens and the workloads' execution-API tokens: shared by all components.
        "api_auth": {"jwt_secret": settings.airflow_jwt_secret},
        # New DAG files show up within 30 s instead of the default 5 min.
        "dag_processor": {"refresh_interval": "30"},
    }
    env = dict(os.environ)
    env["AIRFLOW_HOME"] = str(airflow_home(settings))
    for section, values in options.items():
        env.update({f"AIRFLOW__{section.upper()}__{key.upper()}": value for key, value in values.items()})
    env.update(airflow_connections(settings))
    return env


def _health(settings: Settings) -> dict[str, Any] | None:
    """The api-server's health report, or None if it does not answer."""
    try:
        response = requests.get(f"{settings.airflow_url.rstrip('/')}/api/v2/monitor/health", timeout=5)
        response.raise_for_status()
        report = response.json()
    except (requests.RequestException, ValueError):
        return None
    return report if isinstance(report, dict) else None


class _AirflowComponent(Service):
    subcommand: str
    # Section of the health report for this component (None: the api-server itself).
    health_key: str | None = None
    health_timeout = 180.0

    @property
    def data_dir(self) -> Path:
        return airflow_home(self.settings)

    @property
    def airflow_bin(self) -> str:
        return str(self.settings.main_venv / "bin" / "airflow")

    def marker(self) -> str:
        return f"airflow {self.subcommand}"

    def arguments(self) -> list[str]:
        return []

    def command(self) -> list[str]:
        return [self.airflow_bin, self.subcommand, *self.arguments()]

    def environment(self) -> dict[str, str]:
        # Log lines reach var/log as they happen, not when a buffer fills.
        return {**airflow_environment(self.settings), "PYTHONUNBUFFERED": "1"}

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def is_healthy(self) -> bool:
        """Our component is healthy in the report and has heartbeated since this process started.

        A killed component's last heartbeat stays "healthy" for ~30 s; requiring a newer one makes
        `up` wait for the replacement instead of trusting the corpse.
        """
        component = (_health(self.settings) or {}).get(self.health_key or "") or {}
        if not isinstance(component, dict) or component.get("status") != HEALTHY:
            return False
        try:
            heartbeat = datetime.fromisoformat(component[f"latest_{self.health_key}_heartbeat"])
        except (KeyError, TypeError, ValueError):
            return False
        started = self.started_at()
        return started is not None and heartbeat.timestamp() >= started


class AirflowApiServer(_AirflowComponent):
    name = "airflow-api-server"
    port_key = "airflow"
    subcommand = "api-server"
    # Includes the first start on a fresh database (UI assets, auth manager init) on 2 cores.
    health_timeout = 300.0

    def marker(self) -> str:
        # The process renames itself to "airflow api_server -- host:… port:…" once started.
        return "airflow api"

    def arguments(self) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.port)]

    def prepare(self) -> None:
        super().prepare()
        self._write_passwords_file()
        self._migrate()

    def is_healthy(self) -> bool:
        metadatabase = (_health(self.settings) or {}).get("metadatabase")
        return isinstance(metadatabase, dict) and metadatabase.get("status") == HEALTHY

    def urls(self) -> list[str]:
        user = self.settings.airflow_admin_user
        return [f"{self.settings.airflow_url}  (login {user} / AIRFLOW_ADMIN_PASSWORD in .env)"]

    def _write_passwords_file(self) -> None:
        """SimpleAuthManager's users file, rewritten atomically so a changed .env password applies."""
        target = passwords_file(self.settings)
        staging = target.with_suffix(".tmp")
        payload = json.dumps({self.settings.airflow_admin_user: self.settings.airflow_admin_password})
        staging.unlink(missing_ok=True)
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(payload + "\n")
        os.replace(staging, target)

    def _migrate(self) -> None:
        """`airflow db migrate`: creates or upgrades the schema; a no-op when up to date."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            out.write(b"\n=== airflow db migrate\n")
            out.flush()
            result = subprocess.run(
                [self.airflow_bin, "db", "migrate"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.data_dir,
                timeout=MIGRATE_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            failure = f"airflow db migrate failed (exit {result.returncode})"
            raise RuntimeError(f"{failure}:\n{tail(self.log_file)}")


class AirflowScheduler(_AirflowComponent):
    name = "airflow-scheduler"
    subcommand = "scheduler"
    health_key = "scheduler"

    def arguments(self) -> list[str]:
        # The log server binds every interface with no option; on one host the api-server reads
        # task logs from var/airflow/logs directly.
        return ["--skip-serve-logs"]

    def prepare(self) -> None:
        super().prepare()
        self._kill_orphaned_workers()

    def _kill_orphaned_workers(self) -> None:
        """SIGKILL the LocalExecutor workers of a scheduler that was killed without stopping them.

        Each worker holds the write end of its own task queue, so it never sees EOF and would idle
        forever; the new scheduler resets their task instances anyway (LocalExecutor cannot adopt).
        """
        home = self.data_dir.resolve()
        groups: set[int] = set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                pgid = os.getpgid(int(proc.name))
                # An orphan: its group's leader (the old scheduler) is gone, it ran in our AIRFLOW_HOME.
                orphan = not Path(f"/proc/{pgid}").exists() and (proc / "cwd").resolve() == home
                if orphan and b"LocalExecutor" in (proc / "cmdline").read_bytes():
                    groups.add(pgid)
            except OSError:  # the process exited meanwhile, or is not ours to inspect
                continue
        for pgid in groups:
            log.warning("%s: killing LocalExecutor workers left by dead scheduler %s", self.name, pgid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


class AirflowDagProcessor(_AirflowComponent):
    name = "airflow-dag-processor"
    subcommand = "dag-processor"
    health_key = "dag_processor"


class AirflowTriggerer(_AirflowComponent):
    name = "airflow-triggerer"
    subcommand = "triggerer"
    health_key = "triggerer"

    def arguments(self) -> list[str]:
        return ["--skip-serve-logs"]  # see AirflowScheduler
