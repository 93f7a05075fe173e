"""supervisord for the local stack: its config, written from the service registry, and the daemon.

Every service is one `[program:<name>]`: supervisord restarts it when it exits unexpectedly and,
when it keeps dying at start (Airflow's scheduler while its database restarts), retries with a
delay growing by a second each time, up to START_RETRIES. Programs do not autostart: `make up`
starts them in dependency order and waits for each to be healthy, as before.

A service with an environment of its own runs through instashop.devstack.launch, which reads it
from a private JSON file beside the config (supervisord's `environment=` cannot carry every value);
supervisord's own environment is only the basics of PASSED_THROUGH, so a service sees what its
`environment()` says and nothing of whoever ran the first `make up`. The config holds
supervisord's password, so it is private too.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path

from instashop.devstack.service import Service, StackError
from instashop.ops.process import DetachedProcess, tail, wait_until
from instashop.ops.process_manager import ProcessManager, ProcessManagerError
from instashop.settings import Settings, write_private

log = logging.getLogger(__name__)

# The caller's variables that reach supervisord, hence every service without an environment of its own.
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "JAVA_HOME", "HOME", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
# A start counts once the process has stayed up this long; every failed start adds a second of
# delay before the next: 60 retries keep trying for about half an hour (sum of 1..60 s).
START_SECONDS = 3
START_RETRIES = 60
LOG_MAX_BYTES = "50MB"
LOG_BACKUPS = 3
START_TIMEOUT = 30.0


def base_environment() -> dict[str, str]:
    return {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}


class Supervisord:
    """The daemon of one clone's stack, under var/supervisor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.var_dir / "supervisor"
        self.config_file = self.home / "supervisord.conf"
        self.process = DetachedProcess(
            name="supervisord",
            pid_file=settings.var_dir / "run" / "supervisord.pid",
            log_file=settings.var_dir / "log" / "supervisord.log",
            marker=str(self.config_file),
        )
        self.client = ProcessManager.from_settings(settings)

    @property
    def binary(self) -> str:
        return str(self.settings.main_venv / "bin" / "supervisord")

    def ensure_running(self, services: Iterable[Service]) -> ProcessManager:
        """Write the config; start the daemon, or have the running one apply the new config."""
        self.home.mkdir(parents=True, exist_ok=True)
        services = list(services)
        write_environment_files(services, self.home)
        write_private(self.config_file, render_config(self.settings, services, self.home))
        if self.process.pid() is None:
            if self.client.reachable():
                raise StackError(
                    f"port {self.settings.supervisor_port} answers as a supervisord that is not this clone's; "
                    "stop it, or set SUPERVISOR_PORT in .env to a free port"
                )
            self.process.start([self.binary, "--nodaemon", "-c", str(self.config_file)], env=base_environment())
            if not wait_until(lambda: self.process.pid() is None or self.client.reachable(), START_TIMEOUT, 0.2):
                raise StackError(
                    f"supervisord did not answer within {START_TIMEOUT:.0f}s:\n{tail(self.process.log_file)}"
                )
            if self.process.pid() is None:
                raise StackError(f"supervisord exited during start-up:\n{tail(self.process.log_file)}")
            log.info("%-18s started (pid %s), %s", "supervisord", self.process.pid(), self.settings.supervisor_url)
        try:
            changes = self.client.apply_config()
        except ProcessManagerError as err:
            raise StackError(f"{err}; its config is {self.config_file}") from None
        for name in changes.changed:
            state = self.client.state(name)
            if state is not None and state.alive:
                log.info("%-18s config changed; the running process keeps the old one until restarted", name)
        return self.client

    def stop(self) -> bool:
        """Stop the daemon once every service is stopped (a running one would be stopped with it)."""
        return self.process.stop(60.0, signal.SIGTERM)


def render_config(settings: Settings, services: Iterable[Service], home: Path) -> str:
    sections = [
        _section(
            "supervisord",
            {
                "nodaemon": "true",
                # Its log is our DetachedProcess's (stdout); no second copy.
                "logfile": "/dev/null",
                "logfile_maxbytes": "0",
                "pidfile": str(home / "supervisord.pid"),
                "childlogdir": str(settings.var_dir / "log"),
                "identifier": f"instashop:{settings.var_dir}",
            },
        ),
        _section(
            "inet_http_server",
            {
                "port": f"127.0.0.1:{settings.supervisor_port}",
                "username": settings.supervisor_user,
                "password": settings.supervisor_password,
            },
        ),
        _section(
            "supervisorctl",
            {
                "serverurl": settings.supervisor_url,
                "username": settings.supervisor_user,
                "password": settings.supervisor_password,
            },
        ),
        _section(
            "rpcinterface:supervisor",
            {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
        ),
    ]
    sections += [_section(f"program:{service.name}", program_options(service, home)) for service in services]
    return "; written by `make up` from instashop.devstack.registry: edit the services, not this file\n\n" + "\n".join(
        sections
    )


def program_options(service: Service, home: Path) -> dict[str, str]:
    options = {
        "command": shlex.join(_command(service, home)),
        "directory": str(service.data_dir),
        "autostart": "false",  # `make up` starts them in order, each once the previous is healthy
        "autorestart": "true",
        "startsecs": str(START_SECONDS),
        "startretries": str(START_RETRIES),
        "stopsignal": service.stop_signal.name.removeprefix("SIG"),
        "stopwaitsecs": str(int(service.stop_timeout)),
        # The whole process group: the Spark/Java launchers, gunicorn's workers, Airflow's forks.
        "stopasgroup": "true",
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": str(service.log_file),
        "stdout_logfile_maxbytes": LOG_MAX_BYTES,
        "stdout_logfile_backups": str(LOG_BACKUPS),
    }
    if service.user:
        options["user"] = service.user
    return options


def environment_file(service: Service, home: Path) -> Path:
    return home / f"{service.name}.env.json"


def write_environment_files(services: Iterable[Service], home: Path) -> None:
    """Each service's environment (secrets among them) in a file only it may read (see launch.py)."""
    for service in services:
        environment = service.environment()
        if environment is None:
            continue
        path = environment_file(service, home)
        write_private(path, json.dumps(dict(environment), indent=1, sort_keys=True))
        if service.user:
            shutil.chown(path, service.user, service.user)


def _command(service: Service, home: Path) -> list[str]:
    """The service's command, through the launcher when it has an environment of its own."""
    if service.environment() is None:
        return list(service.command())
    python = str(service.settings.main_venv / "bin" / "python")
    return [python, "-m", "instashop.devstack.launch", str(environment_file(service, home)), "--", *service.command()]


def _escape(value: str) -> str:
    """% doubled: supervisord expands %(name)s in every value."""
    if "\n" in value:
        raise StackError(f"a value for supervisord holds a line break: {value[:40]!r}...")
    return value.replace("%", "%%")


def _section(name: str, options: Mapping[str, str]) -> str:
    return f"[{name}]\n" + "".join(f"{key}={_escape(value)}\n" for key, value in options.items())
