"""The DAGs run from the tests: dag.test() in a subprocess, its outcome as a DagRun.

The subprocess (tests.support.dag_runner) runs with `airflow_environment(settings)`: Airflow reads
its configuration once per process, and the pytest process may already have imported Airflow with
a throw-away home (tests/unit/test_dags.py). It shares the stack's metadata database, so its runs
show in the UI as manual runs triggered by "dag_test".
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instashop.devstack.airflow import airflow_environment
from tests.support.dag_runner import RESULT_MARKER

DAG_TEST_TIMEOUT = 240
# The checkout these tests are in, the runner's working directory: `python -m` finds
# tests.support.dag_runner there (pytest runs from it too, see the Makefile).
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DagRun:
    state: str
    tasks: dict[str, str]
    xcom: dict[str, Any]
    output: str  # the subprocess's stdout and stderr: task logs, tracebacks


def run_dag(settings, dag_id: str, conf: dict | None = None) -> DagRun:
    argv = [
        sys.executable,
        "-m",
        "tests.support.dag_runner",
        dag_id,
        json.dumps(conf or {}),
        str(settings.repo_root / "dags"),
    ]
    proc = subprocess.run(
        argv, env=airflow_environment(settings), cwd=CHECKOUT, capture_output=True, text=True, timeout=DAG_TEST_TIMEOUT
    )
    output = proc.stdout + proc.stderr
    marker = proc.stdout.rfind(RESULT_MARKER)
    assert proc.returncode == 0 and marker >= 0, f"dag.test() of {dag_id} crashed:\n{output[-5000:]}"
    result = json.loads(proc.stdout[marker + len(RESULT_MARKER) :].splitlines()[0])
    return DagRun(result["state"], result["tasks"], result["xcom"], output)
