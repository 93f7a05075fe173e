"""Fixtures shared by more than one test directory (tests/integration, tests/e2e).

Each directory's conftest.py imports the ones it uses, which makes them fixtures there.
"""

import time

import pytest

from instashop.capture.connector import ConnectClient
from instashop.ops import supervisor
from instashop.ops.airflow_api import AirflowClient
from instashop.ops.jobs import consumer_job
from instashop.ops.process import wait_until


@pytest.fixture(scope="session")
def cdc_pipeline(settings):
    """Debezium connector running and the consumer job started (left as found afterwards)."""
    connect = ConnectClient(settings)
    connect.register()
    deadline = time.monotonic() + 90
    while not connect.state().healthy:
        assert time.monotonic() < deadline, f"connector not running: {connect.state()}"
        time.sleep(1)
    job = consumer_job(settings)
    was_running = job.pid() is not None
    job.start()
    yield job
    if not was_running:
        job.stop()


@pytest.fixture
def supervisor_paused(settings):
    """stream_supervisor paused, with no run of it in flight, for the test's length (then as found).

    A test that kills the consumer and owns what happens next needs it: the scheduled run (every
    minute) would otherwise start the consumer again at any moment, even between the kill and the
    test's look at the pid file.
    """
    airflow = AirflowClient(settings)
    was_paused = airflow.is_paused(supervisor.DAG_ID)
    airflow.set_paused(supervisor.DAG_ID, True)
    try:
        # Pausing stops new runs only; one in flight may still start a job. Its tasks end in seconds.
        idle = wait_until(lambda: not airflow.active_runs(supervisor.DAG_ID), 240, 1)
        assert idle, f"{supervisor.DAG_ID} runs still active: {airflow.active_runs(supervisor.DAG_ID)}"
        yield
    finally:
        airflow.set_paused(supervisor.DAG_ID, was_paused)
