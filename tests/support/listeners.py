"""Which TCP ports a process tree listens on, from `ss -ltnpH` (iproute2) and /proc."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# IPv4 loopback, also as Java's dual-stack IPv6 sockets show it (the same address, reached over IPv4).
LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]")
_PROCESS = re.compile(r'\("([^"]*)",pid=(\d+),')


def descendants(pid: int) -> set[int]:
    """pid and every process below it (the Spark app's JVM, PostgreSQL's backends, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """(local address:port, command, pid) of every listening TCP socket of these processes."""
    out = subprocess.run(["ss", "-ltnpH"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        columns = line.split()
        if len(columns) < 6:
            continue
        for command, pid in _PROCESS.findall(columns[5]):
            if int(pid) in pids:
                found.append((columns[3], command, int(pid)))
    return found


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0]


def ports_of(pids: set[int]) -> list[int]:
    return sorted({int(address.rsplit(":", 1)[1]) for address, _, _ in listening(pids)})
