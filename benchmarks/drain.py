"""Time how fast a consumer group drains pre-filled topics, the same way for every side measured.

A record counts once it is consumed, durably written and its offset committed: we read the group's
committed offsets from Kafka's admin API (`instashop.kafka_lag`), not the side's own counters, so
our consumer and a Kafka Connect sink are timed by one yardstick. The rate runs from the first
commit seen to the last one (records committed in between / time in between): start-up (group
join, connector start, the first batch filling) is left out for every side alike.

The machine is shared, so a side's CPU cost is measured too: CPU seconds of its process (our
benchmark process, or the Connect worker's JVM) plus those of its PostgreSQL backends, over the
whole drain. Events per CPU-second hardly move when other jobs compete for the cores.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import Progress

from instashop.ops.kafka_lag import consumer_group_lag
from instashop.settings import Settings

POLL_INTERVAL = 0.25


@dataclass(frozen=True)
class Drain:
    records: int
    seconds: float  # first commit seen -> all committed
    wall_seconds: float  # start of the side (thread start, connector registration) -> all committed
    first_commit: int  # records already committed at the first commit seen (not in the rate)
    cpu_seconds: float  # the side's process and database backends, over the whole drain

    @property
    def per_second(self) -> float:
        if self.seconds <= 0:  # drained in one commit: only the wall time is left to go by
            return self.records / self.wall_seconds
        return (self.records - self.first_commit) / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.records / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_cpu_seconds(settings: Settings, database: str) -> float:
    """CPU time of the PostgreSQL backends connected to `database` now, over their lives."""
    conn = psycopg2.connect(settings.dwh_admin("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
            pids = [pid for (pid,) in cur.fetchall()]
    finally:
        conn.close()
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):  # the backend exited meanwhile
            total += process_cpu_seconds(pid)
    return total


def wait_drained(
    admin: AdminClient,
    group: str,
    topic_pattern: str,
    expected: int,
    console: Console,
    label: str,
    check: Callable[[], str | None],
    cpu: Callable[[], float],
    detail: Callable[[], str] = lambda: "",
    timeout: float = 600.0,
) -> Drain:
    """Poll the group's lag until `expected` records are committed; `check` returns an error to abort.

    `cpu` reads the CPU seconds the side has used so far (see `process_cpu_seconds`).
    """
    started, cpu_at_start = time.perf_counter(), cpu()
    first_at, first_done = 0.0, 0
    with Progress(console=console) as progress:
        task = progress.add_task(label, total=expected)
        while True:
            done = expected - consumer_group_lag(admin, group, topic_pattern).total
            now = time.perf_counter()
            if first_done == 0 and done > 0:
                first_at, first_done = now, done
            progress.update(task, completed=done, description=f"{label} {detail()}")
            if done >= expected:
                break
            if (error := check()) is not None:
                raise RuntimeError(f"{label}: {error} after {done:,} of {expected:,} records")
            if now - started > timeout:
                raise TimeoutError(f"{label}: {done:,} of {expected:,} records after {timeout:.0f}s")
            time.sleep(POLL_INTERVAL)
    return Drain(expected, now - first_at, now - started, first_done, cpu() - cpu_at_start)
