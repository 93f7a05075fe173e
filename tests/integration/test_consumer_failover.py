"""A consumer that died takes its partitions back as soon as it is restarted (static membership)."""

import threading
import time

import pytest

from instashop.devstack import generator
from tests.support.pipeline import wait_until_caught_up

pytestmark = pytest.mark.integration

# The group's session timeout (librdkafka's default 45 s) is how long a dead member's partitions
# stay assigned to it unless it comes back under the same group.instance.id. 30 s leaves room for
# a loaded machine and still fails if the restarted consumer had to wait the session out.
WELL_BEFORE_THE_SESSION_TIMEOUT = 30.0


def test_a_killed_consumer_is_back_at_work_well_before_its_session_expires(settings, cdc_pipeline, supervisor_paused):
    _shop_traffic(settings, seed=31)
    wait_until_caught_up(settings)  # the consumer is a member of the group, with its partitions
    assert cdc_pipeline.kill() is not None  # SIGKILL: no LeaveGroup, the group still counts the old member
    assert cdc_pipeline.pid() is None
    cdc_pipeline.start()
    restarted = time.monotonic()
    _shop_traffic(settings, seed=32)
    wait_until_caught_up(settings, timeout=WELL_BEFORE_THE_SESSION_TIMEOUT - (time.monotonic() - restarted))


def _shop_traffic(settings, seed: int) -> None:
    writer = threading.Thread(
        target=generator.run,
        args=(settings.oltp_dsn, generator.GeneratorConfig(rate=100, sessions=10, seed=seed)),
        kwargs={"console": None},
    )
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the generator did not finish"
