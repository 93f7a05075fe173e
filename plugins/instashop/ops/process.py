"""Detached processes tracked by pid files.

Used for the pipeline's jobs (the consumer, the Spark app) and for supervisord itself: a process
outlives whoever started it, its pid file tells who it is, and a stale pid file (after a crash or
a reboot) is recognised and ignored.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetachedProcess:
    """One long-running process: where its pid and log live and how to recognise it."""

    name: str
    pid_file: Path
    log_file: Path
    # A string its command line must contain, so a recycled pid is not mistaken for ours.
    marker: str

    def pid(self) -> int | None:
        """The pid of the running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        cmdline = _cmdline(pid)
        if cmdline is not None and self.marker in cmdline:
            return pid
        log.info("%s: removing stale pid file %s (pid %s is gone)", self.name, self.pid_file, pid)
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Start argv in its own session, output appended to the log file; returns the pid.

        user runs it as another OS user (PostgreSQL refuses to run as root).
        """
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                user=user,
                group=user,
                start_new_session=True,  # survives the caller; signals reach its whole group
            )
        # Right after exec the kernel may still show an empty command line: let it settle, so the
        # first pid() check does not mistake our own process for a stale one.
        wait_until(lambda: self.marker in (_cmdline(proc.pid) or "") or proc.poll() is not None, 5, 0.01)
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Send sig to the process group, SIGKILL it after timeout. False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, sig)
        if not wait_until(lambda: not _alive(pid), timeout):
            log.warning("%s: still running %.0fs after %s, sending SIGKILL", self.name, timeout, sig.name)
            _signal_group(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> int | None:
        """SIGKILL the whole process group at once, as a crash would (used by fault tests).

        Returns the pid it killed (None: nothing was running), once that process is gone.
        """
        pid = self.pid()
        if pid is not None:
            kill_group(pid, self.name)
        return pid


def kill_group(pid: int, name: str, timeout: float = 10.0) -> None:
    """SIGKILL a process group at once and wait until its leader is gone."""
    _signal_group(pid, signal.SIGKILL)
    if not wait_until(lambda: not _alive(pid), timeout, 0.05):
        raise RuntimeError(f"{name}: pid {pid} still alive {timeout:.0f}s after SIGKILL")


def wait_until(predicate, timeout: float, interval: float = 0.5) -> bool:
    """Poll predicate until it is true or timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
