"""A client of the process manager (supervisord) that runs the local services and restarts them.

supervisord keeps every service running: a process that exits unexpectedly is started again, one
that keeps dying at start is retried with a growing delay (1 s, 2 s, ...) before it is given up
as FATAL. We talk to it over its XML-RPC API (HTTP on 127.0.0.1, basic auth: `SUPERVISOR_USER`,
`SUPERVISOR_PASSWORD`), the same API `supervisorctl` uses, so an operator's
`supervisorctl -c var/supervisor/supervisord.conf status` and our code always agree.
"""

from __future__ import annotations

import http.client
import xmlrpc.client
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from instashop.settings import Settings

# supervisord's process states (supervisor.states.ProcessStates) in which the process exists.
ALIVE_STATES = ("STARTING", "RUNNING", "STOPPING")
# States after which it will not come back by itself.
GIVEN_UP_STATES = ("FATAL",)
# States in which supervisord neither runs nor retries it (BACKOFF is a retry on its way).
RESTING_STATES = ("STOPPED", "EXITED", "FATAL")
# Fault codes of supervisor.xmlrpc.Faults we expect in normal operation.
_BAD_NAME, _NOT_RUNNING, _ALREADY_STARTED = 10, 70, 60


class ProcessManagerError(RuntimeError):
    """supervisord is unreachable or refused a request; the message says which and why."""


@dataclass(frozen=True)
class ProgramState:
    name: str
    state: str  # STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN
    pid: int | None  # None unless the process exists
    started_at: float | None  # epoch seconds of the last start
    description: str  # supervisord's one-line summary (uptime, or why it is not running)

    @property
    def alive(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class ConfigChanges:
    added: list[str]
    changed: list[str]
    removed: list[str]


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float | None) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


class ProcessManager:
    """supervisord's XML-RPC API, as the stack manager and the stream supervisor need it."""

    def __init__(self, url: str, user: str, password: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        # ServerProxy sends the URL's credentials as HTTP basic auth.
        self._endpoint = f"{parts.scheme}://{user}:{password}@{parts.netloc}/RPC2"
        self._url = url
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = 10.0) -> ProcessManager:
        return cls(settings.supervisor_url, settings.supervisor_user, settings.supervisor_password, timeout)

    def reachable(self) -> bool:
        try:
            return self._call("supervisor.getState", timeout=2.0)["statename"] == "RUNNING"
        except ProcessManagerError:
            return False

    def state(self, name: str) -> ProgramState | None:
        """The program's state, or None when supervisord does not know it."""
        try:
            info = self._call("supervisor.getProcessInfo", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == _BAD_NAME:
                return None
            raise ProcessManagerError(f"supervisord: {name}: {fault.faultString}") from None
        return ProgramState(
            name=name,
            state=info["statename"],
            pid=info["pid"] or None,
            started_at=float(info["start"]) or None,
            description=info["spawnerr"] or info["description"],
        )

    def start(self, name: str) -> None:
        """Ask for a start without waiting for it (the caller runs its own health check)."""
        self._fault_tolerant("supervisor.startProcess", name, False, tolerated=_ALREADY_STARTED, timeout=self._timeout)

    def stop(self, name: str, timeout: float) -> bool:
        """Stop and wait (supervisord sends SIGKILL after the program's stopwaitsecs); False if it
        was not running."""
        return self._fault_tolerant("supervisor.stopProcess", name, True, tolerated=_NOT_RUNNING, timeout=timeout + 30)

    def apply_config(self) -> ConfigChanges:
        """Re-read the config file; add new programs and drop removed ones (`supervisorctl update`).

        A changed program is replaced only while it rests: a running or retrying service is never
        restarted behind the operator's back (it keeps its config until it rests).
        """
        [[added, changed, removed]] = self._call("supervisor.reloadConfig")
        for name in removed:
            self._fault_tolerant("supervisor.stopProcess", name, True, tolerated=_NOT_RUNNING, timeout=300.0)
            self._call("supervisor.removeProcessGroup", name)
        for name in changed:
            state = self.state(name)
            if state is None or state.state in RESTING_STATES:
                self._call("supervisor.removeProcessGroup", name)
                added = [*added, name]
        for name in added:
            self._call("supervisor.addProcessGroup", name)
        return ConfigChanges(added, changed, removed)

    def shutdown(self) -> None:
        self._call("supervisor.shutdown")

    # --- internals -----------------------------------------------------------------------------

    def _fault_tolerant(self, method: str, *args: Any, tolerated: int, timeout: float | None) -> bool:
        """Call; False when the fault `tolerated` says there was nothing to do."""
        try:
            self._call(method, *args, timeout=timeout)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == tolerated:
                return False
            raise ProcessManagerError(f"supervisord: {method}({args[0]}): {fault.faultString}") from None
        return True

    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """One XML-RPC call (timeout None: the client's default); a Fault is the caller's to
        interpret, anything else is an error."""
        transport = _TimeoutTransport(self._timeout if timeout is None else timeout)
        proxy = xmlrpc.client.ServerProxy(self._endpoint, transport=transport, allow_none=True)
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except xmlrpc.client.ProtocolError as err:
            reason = "wrong SUPERVISOR_USER/SUPERVISOR_PASSWORD" if err.errcode == 401 else err.errmsg
            raise ProcessManagerError(f"supervisord at {self._url}: {reason}") from None
        except (OSError, http.client.HTTPException) as err:  # TimeoutError is an OSError
            raise ProcessManagerError(f"supervisord at {self._url} is unreachable ({err})") from None
