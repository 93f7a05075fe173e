"""Supervisor decisions: what counts as down, stuck, starting or lagging, and the cure for each."""

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from instashop.capture.connector import ConnectorState
from instashop.ops.jobs import Job
from instashop.ops.process import DetachedProcess
from instashop.ops.supervisor import (
    BACKOFF,
    DEGRADED,
    DOWN,
    HEALTHY,
    NONE,
    REGISTERED,
    RESTARTED,
    STARTED,
    STARTING,
    STUCK,
    Heartbeat,
    Policy,
    Supervised,
    SupervisorError,
    assess_connector,
    assess_job,
    check_job,
    job_lock,
    raise_if_unhealed,
    redis_heartbeat,
)

POLICY = Policy(stale_after=60, startup_grace=120, max_lag=1000, stop_timeout=5, survive_for=0.5, lock_timeout=1)


@pytest.mark.parametrize(
    ("pid", "uptime", "heartbeat", "lag", "status"),
    [
        (None, None, Heartbeat(1.0, 7), 0, DOWN),
        (7, 600, Heartbeat(2.0, 7), 10, HEALTHY),
        (7, 600, Heartbeat(2.0, None), None, HEALTHY),  # a heartbeat that does not name its pid
        (7, 600, Heartbeat(61.0, 7), 0, STUCK),
        (7, 600, None, 0, STUCK),
        (7, 600, Heartbeat(1.0, 6), 0, STUCK),  # only the previous process ever beat
        (7, 30, Heartbeat(1.0, 6), 0, STARTING),  # ... but this one just started
        (7, 30, None, 0, STARTING),
        (7, 600, Heartbeat(2.0, 7), 5000, DEGRADED),
    ],
)
def test_job_status(pid, uptime, heartbeat, lag, status):
    assert assess_job(pid, uptime, heartbeat, lag, POLICY)[0] == status


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (ConnectorState("RUNNING", ["RUNNING"]), (HEALTHY, NONE)),
        (ConnectorState("MISSING", []), (DOWN, REGISTERED)),
        (ConnectorState("RUNNING", ["FAILED"]), (DOWN, RESTARTED)),
        (ConnectorState("FAILED", ["FAILED"]), (DOWN, RESTARTED)),
        (ConnectorState("RUNNING", []), (DOWN, RESTARTED)),
        (ConnectorState("UNASSIGNED", ["UNASSIGNED"]), (DOWN, RESTARTED)),
        (ConnectorState("PAUSED", ["PAUSED"]), (DEGRADED, NONE)),
        (ConnectorState("RUNNING", ["RESTARTING"]), (STARTING, NONE)),
    ],
)
def test_connector_status_and_cure(state, expected):
    assert assess_connector(state) == expected


@pytest.fixture
def sleeper(tmp_path):
    """A real detached job (a sleeping script), tracked by a pid file under tmp_path like instashop.ops.jobs'."""
    script = tmp_path / "sleeper"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    script.chmod(0o755)
    marker = f"--job-marker={tmp_path / 'run' / 'sleeper.pid'}"
    process = DetachedProcess("sleeper", tmp_path / "run" / "sleeper.pid", tmp_path / "sleeper.log", marker)
    job = Job("sleeper", process, [str(script), marker])
    yield job
    job.kill()


def test_a_down_job_is_started_and_a_stuck_one_restarted(sleeper):
    check = check_job(Supervised(sleeper, heartbeat=lambda: None, policy=POLICY))
    assert (check.status, check.action) == (DOWN, STARTED)
    first = sleeper.pid()
    assert first == check.details["new_pid"]

    no_grace = dataclasses.replace(POLICY, startup_grace=0)
    check = check_job(Supervised(sleeper, heartbeat=lambda: Heartbeat(300.0, first), policy=no_grace))
    assert (check.status, check.action) == (STUCK, RESTARTED)
    assert sleeper.pid() not in (None, first)


def test_a_healthy_job_is_left_alone(sleeper):
    pid = sleeper.start()
    check = check_job(Supervised(sleeper, heartbeat=lambda: Heartbeat(1.0, pid), policy=POLICY))
    assert (check.status, check.action, sleeper.pid()) == (HEALTHY, NONE, pid)


def test_an_unreadable_heartbeat_never_restarts_a_running_job(sleeper):
    pid = sleeper.start()

    def broken():
        raise ConnectionError("DWH down")

    check = check_job(Supervised(sleeper, heartbeat=broken, policy=POLICY))
    assert (check.status, check.action, sleeper.pid()) == (DEGRADED, NONE, pid)
    assert "DWH down" in check.details["heartbeat_error"]


def test_the_lock_is_exclusive_across_processes(sleeper):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(30)",
            str(sleeper.process.pid_file.with_name("sleeper.supervisor.lock")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        sleeper.process.pid_file.parent.mkdir(parents=True, exist_ok=True)
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SupervisorError, match="stayed locked"), job_lock(sleeper, timeout=0.5):
            pass
    finally:
        holder.kill()
        holder.wait()
    with job_lock(sleeper, timeout=5):
        pass


class FakeRedis:
    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        assert key == "live:heartbeat"
        return {k.encode(): v.encode() for k, v in self.fields.items()}


def test_the_spark_heartbeat_is_read_from_redis_and_a_failed_query_is_no_sign_of_life():
    now = datetime.now(UTC).isoformat()
    beat = redis_heartbeat(FakeRedis({"status": "running", "pid": "4242", "updated_at": now}))
    assert (beat.pid, beat.alive) == (4242, True) and beat.age < 5
    failed = redis_heartbeat(FakeRedis({"status": "failed", "pid": "4242", "updated_at": now}))
    assert assess_job(4242, 600, failed, None, POLICY) == (STUCK, "its heartbeat says failed")
    assert redis_heartbeat(FakeRedis({})) is None


def test_a_job_started_from_a_task_does_not_inherit_airflow_secrets(sleeper, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SECRET_DB", "postgres://user:secret@host/db")
    monkeypatch.setenv("__AIRFLOW_SUPERVISOR_FD", "9")
    monkeypatch.setenv("INSTASHOP_KEEP_ME", "1")
    check_job(Supervised(sleeper, heartbeat=lambda: None, policy=POLICY))
    environ = Path(f"/proc/{sleeper.pid()}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert "INSTASHOP_KEEP_ME" in names and not {"AIRFLOW_CONN_SECRET_DB", "__AIRFLOW_SUPERVISOR_FD"} & names
    assert os.environ["AIRFLOW_CONN_SECRET_DB"]  # the task's own environment is left as it was


def test_a_crash_looping_job_is_not_started_again_and_the_task_fails(sleeper):
    looping = Supervised(sleeper, heartbeat=lambda: None, recent_starts=lambda within: 3, policy=POLICY)
    check = check_job(looping)
    assert (check.status, check.action, sleeper.pid()) == (DOWN, BACKOFF, None)
    with pytest.raises(SupervisorError, match="crash-loops: started 3 times"):
        raise_if_unhealed(check)
    fewer = Supervised(sleeper, heartbeat=lambda: None, recent_starts=lambda within: 2, policy=POLICY)
    assert check_job(fewer).action == STARTED
