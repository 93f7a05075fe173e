import psycopg2
import pytest

from instashop.ops.jobs import generator_job

# cdc_pipeline: consumer and connector running (shared with tests/e2e); supervisor_paused: the
# scheduled stream_supervisor kept from restarting what a test killed.
from tests.support.fixtures import cdc_pipeline, supervisor_paused  # noqa: F401


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
