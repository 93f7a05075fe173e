"""What every service of the local stack offers the stack manager.

A service is one program of the process manager (supervisord, see instashop.devstack.supervisord)
with a log, an optional TCP port, a health check, an idempotent `prepare` (config files, data
directories) run before each start and an idempotent `bootstrap` (roles, databases, users) run
once it is healthy. supervisord starts it again when it exits; subclasses say only what is
specific to them.
"""

from __future__ import annotations

import signal
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from instashop.ops.process import DetachedProcess, kill_group, wait_until
from instashop.ops.process_manager import GIVEN_UP_STATES, ProcessManager, ProcessManagerError, ProgramState
from instashop.settings import Settings

# A start request is answered with a pid within this time, or supervisord says why not.
SPAWN_TIMEOUT = 10.0


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
        self.programs = ProcessManager.from_settings(settings)

    # --- what subclasses provide -------------------------------------------------------------

    @abstractmethod
    def command(self) -> Sequence[str]:
        """argv of the long-running process."""

    @abstractmethod
    def is_healthy(self) -> bool:
        """A real request to the service (SQL, PING, REST); never raises."""

    def marker(self) -> str:
        """A string of the process's command line that identifies it (see legacy_process)."""
        return str(self.data_dir)

    def environment(self) -> Mapping[str, str] | None:
        """Environment of the process; None: supervisord's own (instashop.devstack.supervisord)."""
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

    def state(self) -> ProgramState | None:
        """supervisord's view of the program; None when supervisord is not running (nor is it)."""
        try:
            return self.programs.state(self.name)
        except ProcessManagerError:
            return None

    def pid(self) -> int | None:
        state = self.state()
        return state.pid if state is not None else None

    def started_at(self) -> float | None:
        """Epoch seconds of the running process's start, or None."""
        state = self.state()
        return state.started_at if state is not None and state.alive else None

    def given_up(self) -> bool:
        """supervisord stopped retrying a process that keeps dying at start."""
        state = self.state()
        return state is not None and state.state in GIVEN_UP_STATES

    def start(self) -> int | None:
        """Prepare, then have supervisord start it; the pid, or None if it died at once."""
        self.prepare()
        self.programs.start(self.name)
        wait_until(lambda: self.pid() is not None or self.given_up(), SPAWN_TIMEOUT, 0.1)
        return self.pid()

    def stop(self) -> bool:
        """Stop (supervisord sends SIGKILL after stop_timeout); False if it was not running."""
        try:
            return self.programs.stop(self.name, self.stop_timeout)
        except ProcessManagerError:
            return False  # no supervisord: nothing of ours runs

    def kill(self) -> int | None:
        """SIGKILL the whole process group, as a crash would; the pid killed (None: not running).
        supervisord notices and starts it again."""
        pid = self.pid()
        if pid is not None:
            kill_group(pid, self.name)
        return pid

    def legacy_process(self) -> DetachedProcess:
        """The same service as an older version ran it: a detached process with a pid file."""
        return DetachedProcess(self.name, self.run_dir / f"{self.name}.pid", self.log_file, self.marker())

    def port_taken(self) -> bool:
        """True if something already listens on our port (checked only when we are not running)."""
        if self.port is None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0
