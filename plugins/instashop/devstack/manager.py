"""`make up / down / status / logs / clean`: start, stop and inspect the local stack."""

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

from instashop.devstack.registry import all_services
from instashop.devstack.service import Service, StackError
from instashop.ops.process import tail, wait_until
from instashop.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int | None
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
    for service in select(settings, names):
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
    """Stop running services in reverse order; data is kept."""
    for service in reversed(select(settings, names)):
        if service.stop():
            log.info("%-18s stopped", service.name)


def status(settings: Settings, names: Iterable[str] = ()) -> list[ServiceStatus]:
    return [
        ServiceStatus(s.name, s.port, pid := s.pid(), pid is not None and s.is_healthy(), str(s.log_file))
        for s in select(settings, names)
    ]


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


def _wait_healthy(service: Service) -> None:
    """Wait for the health check; fail fast if the process exits, with its log tail either way."""
    became_healthy = wait_until(lambda: service.pid() is None or service.is_healthy(), service.health_timeout)
    if service.pid() is None:
        problem = "exited during start-up"
    elif not became_healthy:
        problem = f"did not become healthy within {service.health_timeout:.0f}s"
    else:
        return
    raise StackError(f"{service.name} {problem}. Last lines of {service.log_file}:\n{tail(service.log_file)}")
