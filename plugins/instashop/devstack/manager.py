"""`make up / down / status / logs / clean`: start, stop and inspect the local stack.

supervisord (instashop.devstack.supervisord) runs the services and restarts them when they exit;
`up` starts them in order and waits for each to be healthy, `down` stops them and then supervisord.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from instashop.devstack import external
from instashop.devstack.registry import all_services
from instashop.devstack.service import Service, StackError
from instashop.devstack.supervisord import Supervisord
from instashop.ops.process import tail, wait_until
from instashop.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int | None
    state: str  # supervisord's: RUNNING, BACKOFF (restarting), FATAL (gave up), STOPPED, ...
    pid: int | None
    healthy: bool
    log_file: str


def select(settings: Settings, names: Iterable[str] = ()) -> list[Service]:
    services = all_services(settings)
    wanted = set(names)
    unknown = wanted - {s.name for s in services}
    if unknown:
        known = ", ".join(s.name for s in services)
        raise StackError(f"unknown service(s) {', '.join(sorted(unknown))}; known: {known}")
    return [s for s in services if not wanted or s.name in wanted]


def up(settings: Settings, names: Iterable[str] = ()) -> None:
    """Start what is not running, in order, waiting for each to be healthy. Safe to repeat."""
    make_var_private(settings.var_dir)
    selected = select(settings, names)
    outside = _external(settings)
    local = [service for service in all_services(settings) if service.name not in outside]
    _stop_legacy_processes(local)
    Supervisord(settings).ensure_running(local)
    for service in selected:
        if service.name in outside:
            external.check_reachable(service)
            log.info("%-18s external, answers at %s", service.name, external.ADDRESS_KEYS[service.name])
            continue
        if service.pid() is not None:
            _wait_healthy(service)
            service.bootstrap()  # idempotent: picks up roles or passwords added since it started
            log.info("%-18s already running (pid %s)", service.name, service.pid())
            continue
        if service.port_taken():
            raise StackError(
                f"{service.name}: port {service.port} on 127.0.0.1 is taken by another process. "
                f"Stop it, or set {(service.port_key or '').upper()}_PORT in .env to a free port."
            )
        started = time.monotonic()
        pid = service.start()
        log.info("%-18s starting (pid %s), waiting up to %.0fs", service.name, pid, service.health_timeout)
        _wait_healthy(service)
        service.bootstrap()
        log.info("%-18s healthy after %.1fs", service.name, time.monotonic() - started)


def make_var_private(var_dir: Path) -> None:
    """Only the owner may read what var/ holds; files made from now on are private by our umask.

    var/ itself stays traversable (0711) for the postgres user to reach its clusters, whose data
    directories the server keeps at 0700 itself. Older installs made everything world-readable.
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    var_dir.chmod(0o711)
    for root, dirs, files in os.walk(var_dir):
        if Path(root) == var_dir:
            dirs[:] = [d for d in dirs if not _is_cluster_dir(d)]
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                path.chmod(stat.S_IMODE(mode) & 0o700)


def down(settings: Settings, names: Iterable[str] = ()) -> None:
    """Stop running services in reverse order, then supervisord if all were asked; data is kept.
    External services are the user's: never stopped."""
    outside = _external(settings)
    for service in reversed(select(settings, names)):
        if service.name not in outside and service.stop():
            log.info("%-18s stopped", service.name)
    if not names:
        _stop_legacy_processes([s for s in all_services(settings) if s.name not in outside])
        if Supervisord(settings).stop():
            log.info("%-18s stopped", "supervisord")


def status(settings: Settings, names: Iterable[str] = ()) -> list[ServiceStatus]:
    rows, outside = [], _external(settings)
    for service in select(settings, names):
        if service.name in outside:
            reachable = external.unreachable_reason(service) is None
            rows.append(ServiceStatus(service.name, None, "external", None, reachable, "-"))
            continue
        state = service.state()
        pid = state.pid if state is not None else None
        healthy = pid is not None and service.is_healthy()
        rows.append(
            ServiceStatus(
                service.name, service.port, state.state if state else "-", pid, healthy, str(service.log_file)
            )
        )
    return rows


def clean(settings: Settings) -> None:
    """Stop everything and delete all data and logs under var/."""
    down(settings)
    for entry in settings.var_dir.glob("postgres*"):
        if entry.is_symlink():  # cluster relocated outside the clone (see PostgresCluster)
            shutil.rmtree(entry.resolve(), ignore_errors=True)
    shutil.rmtree(settings.var_dir, ignore_errors=True)
    log.info("removed %s", settings.var_dir)


def follow_logs(settings: Settings, names: Iterable[str] = ()) -> None:
    files = [str(s.log_file) for s in select(settings, names)]
    subprocess.run(["tail", "-n", "20", "-F", *files], check=False)


def log_tails(settings: Settings, names: Iterable[str] = (), lines: int = 20) -> dict[str, str]:
    return {s.name: tail(s.log_file, lines) for s in select(settings, names)}


def _is_cluster_dir(name: str) -> bool:
    """A PostgreSQL cluster's directory under var/ (`postgres` is that of the one-cluster layout)."""
    return name == "postgres" or name.startswith("postgres-")


def _external(settings: Settings) -> set[str]:
    return external.external_names(settings, [service.name for service in all_services(settings)])


def _stop_legacy_processes(services: list[Service]) -> None:
    """Stop what an older version started as detached processes with pid files (no supervisord)."""
    for service in services:
        legacy = service.legacy_process()
        if legacy.pid() is not None:
            log.info("%-18s stopping the copy an older version started without a process manager", service.name)
            legacy.stop(service.stop_timeout, service.stop_signal)


def _wait_healthy(service: Service) -> None:
    """Wait for the health check while supervisord (re)starts the process; fail fast once it gives
    up on a process that keeps exiting at start, with the log tail either way."""
    became_healthy = wait_until(lambda: service.given_up() or service.is_healthy(), service.health_timeout)
    if service.given_up():
        state = service.state()
        problem = f"kept exiting at start-up ({state.description if state else 'supervisord gave up'})"
    elif not became_healthy:
        problem = f"did not become healthy within {service.health_timeout:.0f}s"
    else:
        return
    raise StackError(f"{service.name} {problem}. Last lines of {service.log_file}:\n{tail(service.log_file)}")
