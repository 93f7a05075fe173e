"""The local services come back by themselves: no `make up` after a crash or a database restart.

A process manager (supervisord) runs every service of the stack. These tests break a piece and
then only watch: nothing here starts a service again, except the database an operator restarts.
"""

import time

import pytest

from instashop.devstack import manager
from instashop.devstack.airflow import AirflowDagProcessor, AirflowScheduler, AirflowTriggerer
from instashop.devstack.redis_server import RedisServer
from instashop.ops.process import wait_until

pytestmark = pytest.mark.integration

# Airflow's components exit when their database goes away, some only once their running work is
# done: a component counts as back when it has been healthy this long without a break.
STEADY_SECONDS = 30.0


def _steadily(predicate, timeout: float, steady: float = STEADY_SECONDS) -> bool:
    deadline, healthy_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if not predicate():
            healthy_since = None
        elif healthy_since is None:
            healthy_since = time.monotonic()
        elif time.monotonic() - healthy_since >= steady:
            return True
        time.sleep(1)
    return False


def test_a_killed_service_is_started_again_by_the_process_manager(settings):
    redis = RedisServer(settings)
    killed = redis.kill()
    assert killed is not None, "redis was not running"
    assert wait_until(lambda: redis.pid() not in (None, killed) and redis.is_healthy(), 60, 0.2), (
        f"redis not back 60 s after SIGKILL of pid {killed}"
    )


@pytest.mark.timeout(600)
def test_airflow_comes_back_by_itself_after_its_database_restarts(settings):
    components = [AirflowScheduler(settings), AirflowDagProcessor(settings), AirflowTriggerer(settings)]
    before = {c.name: c.pid() for c in components}
    try:
        manager.down(settings, ["postgres-dwh"])
        time.sleep(15)  # long enough for the components to notice (they exit, or fail their beats)
        manager.up(settings, ["postgres-dwh"])  # the operator restarts the database, nothing else

        back = _steadily(lambda: all(c.pid() is not None and c.is_healthy() for c in components), 420)
        states = {c.name: (c.pid(), c.is_healthy()) for c in components}
        assert back, f"Airflow not steadily healthy 7 min after the database came back: {states}"
        # They did lose their database: each exited and is a new process now.
        assert all(c.pid() != before[c.name] for c in components), f"before {before}, now {states}"
    finally:
        manager.up(settings)  # leave a whole stack for the next tests, whatever happened
