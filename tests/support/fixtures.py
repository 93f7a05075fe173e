"""Fixtures shared by more than one test directory (tests/integration, tests/e2e).

Each directory's conftest.py imports the ones it uses, which makes them fixtures there.
"""

import time

import pytest

from instashop.capture.connector import ConnectClient
from instashop.ops.jobs import consumer_job


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
