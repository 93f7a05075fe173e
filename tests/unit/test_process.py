"""DetachedProcess: pid files that survive their starter and recognise stale or recycled pids."""

import os
import sys

from instashop.ops.process import DetachedProcess, tail


def _sleeper(tmp_path, marker="instashop-test-sleeper"):
    return DetachedProcess("sleeper", tmp_path / "run" / "sleeper.pid", tmp_path / "log" / "sleeper.log", marker)


def test_start_writes_pid_file_and_stop_ends_the_process(tmp_path):
    proc = _sleeper(tmp_path)
    pid = proc.start(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)", "instashop-test-sleeper"]
    )
    assert proc.pid() == pid
    assert proc.stop(timeout=5) is True
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert "starting sleeper" in tail(proc.log_file)


def test_stale_pid_file_is_ignored_and_removed(tmp_path):
    proc = _sleeper(tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text(f"{os.getpid()}\n")  # alive, but its command line lacks the marker
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert proc.stop() is False


def test_kill_is_immediate(tmp_path):
    proc = _sleeper(tmp_path)
    pid = proc.start(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
            "instashop-test-sleeper",
        ]
    )
    assert proc.kill() == pid  # the pid it killed, returned once that process is gone
    assert proc.pid() is None
    assert proc.kill() is None  # nothing left to kill


def test_tail_of_missing_file_says_so(tmp_path):
    assert "does not exist" in tail(tmp_path / "nope.log")
