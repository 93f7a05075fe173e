import time

import psycopg2
import pytest

from instashop.capture.connector import ConnectClient
from instashop.ops.jobs import consumer_job, generator_job


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
def maintainer(settings):
    """A connection as dwh_maintainer (owner of realtime_events and its partitions)."""
    conn = psycopg2.connect(settings.dwh_maintainer_dsn)
    yield conn
    conn.close()


@pytest.fixture(scope="session", autouse=True)
def demo_generator_paused(settings):
    """The demo's generator (`make demo`) stopped while the tests run, started again afterwards:
    the tests wait for the DWH to equal the OLTP, which a steady stream of new rows never lets it."""
    demo = generator_job(settings)
    was_running = demo.stop()
    yield
    if was_running:
        demo.start()
