"""What every service of the local stack offers the stack manager.

A service is a detached process with a log, an optional TCP port, a health check, an idempotent
`prepare` (config files, data directories) run before start and an idempotent `bootstrap`
(roles, databases, users) run once it is healthy. Subclasses say only what is specific to them.
"""

from __future__ import annotations

import signal
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from instashop.ops.process import DetachedProcess
from instashop.settings import Settings


class StackError(RuntimeError):
    """A service could not be started; the message says which and why."""


class Service(ABC):
    name: str
    # Key of the port in .env (`<port_key>_PORT`); None for a service without a port.
    port_key: str | None = None
    health_timeout: float = 60.0
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 30.0
    # OS user to run as (None: the caller's).
    user: str | None = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = DetachedProcess(
            name=self.name,
            pid_file=self.run_dir / f"{self.name}.pid",
            log_file=self.log_file,
            marker=self.marker(),
        )

    # --- what subclasses provide -------------------------------------------------------------

    @abstractmethod
    def command(self) -> Sequence[str]:
        """argv of the long-running process."""

    @abstractmethod
    def is_healthy(self) -> bool:
        """A real request to the service (SQL, PING, REST); never raises."""

    def marker(self) -> str:
        """A string of the process's command line that identifies it (see DetachedProcess)."""
        return str(self.data_dir)

    def environment(self) -> Mapping[str, str] | None:
        """Environment of the process; None inherits the caller's."""
        return None

    def prepare(self) -> None:
        """Idempotent work before start: directories, config files, one-time initialisation."""

    def bootstrap(self) -> None:
        """Idempotent work once healthy: roles, databases, users."""

    def urls(self) -> list[str]:
        """What `make demo` prints for this service."""
        return []

    # --- shared behaviour --------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        return self.settings.port(self.port_key) if self.port_key else None

    @property
    def data_dir(self) -> Path:
        return self.settings.var_dir / self.name

    @property
    def run_dir(self) -> Path:
        return self.settings.var_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.settings.var_dir / "log" / f"{self.name}.log"

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self) -> int:
        self.prepare()
        return self.process.start(self.command(), env=self.environment(), cwd=self.data_dir, user=self.user)

    def stop(self) -> bool:
        return self.process.stop(self.stop_timeout, self.stop_signal)

    def port_taken(self) -> bool:
        """True if something already listens on our port (checked only when we are not running)."""
        if self.port is None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0
