"""The pipeline's long-running jobs as detached processes: started by `make demo`, the tests and the
stream_supervisor DAG alike, each tracked by a pid file under var/run and logging to var/log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from instashop.ops.process import DetachedProcess
from instashop.settings import Settings


@dataclass(frozen=True)
class Job:
    name: str
    process: DetachedProcess
    argv: list[str]

    def start(self) -> int:
        """Start unless running; returns the pid either way."""
        pid = self.process.pid()
        return pid if pid is not None else self.process.start(self.argv, env=dict(os.environ))

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM: the job finishes its batch and commits before it exits."""
        return self.process.stop(timeout)

    def kill(self) -> int | None:
        return self.process.kill()

    def pid(self) -> int | None:
        return self.process.pid()


def consumer_job(settings: Settings, *extra_args: str) -> Job:
    return _job(settings, "consumer", [_instashop(settings), "consume", *extra_args])


def generator_job(settings: Settings, rate: float = 50.0) -> Job:
    """Demo traffic: a steady trickle of shop sessions until stopped."""
    return _job(settings, "generator", [_instashop(settings), "generate", "--rate", str(rate)])


def spark_job(settings: Settings, *extra_args: str, name: str = "spark") -> Job:
    """The live-metrics Spark app (instashop.live.spark.app) run by the main venv's python.

    The app launches the driver JVM itself, in the job's process group but deaf to SIGTERM: `stop`
    lets it end the query between batches, `kill` takes driver and JVM down at once. extra_args
    are the app's options (`--help`); a second instance needs its own name, checkpoint and prefix.
    """
    python = str(Path(settings.main_venv) / "bin" / "python")
    job = _job(settings, name, [python])
    # python would take the marker for one of its own options: it goes after the module.
    return Job(job.name, job.process, [python, "-m", "instashop.live.spark.app", job.argv[1], *extra_args])


def demo_jobs(settings: Settings) -> list[Job]:
    """What `make demo` runs on top of the stack, in start order (stopped in reverse)."""
    return [consumer_job(settings), spark_job(settings), generator_job(settings)]


def _job(settings: Settings, name: str, argv: list[str]) -> Job:
    var = settings.var_dir
    # The marker is the job's pid file path: present on the command line of no other process.
    pid_file = var / "run" / f"{name}.pid"
    marker = f"--job-marker={pid_file}"
    process = DetachedProcess(name, pid_file, var / "log" / f"{name}.log", marker)
    return Job(name, process, [*argv[:1], marker, *argv[1:]])


def _instashop(settings: Settings) -> str:
    return str(Path(settings.main_venv) / "bin" / "instashop")
