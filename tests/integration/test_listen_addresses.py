"""Nothing the stack or its jobs started listens outside loopback (issue 16, item 2).

supervisord and every service it runs, every process with a pid file under var/run (the jobs of
`make demo` and the tests' own job instances) and everything below each (the Spark app's driver JVM, PostgreSQL's
backends) is looked up in `ss -ltnpH`. A Real-time Mode Spark app is running meanwhile: its
streaming-shuffle servers (one per task) are the listeners that used to bind every interface.

Accepted: 127.0.0.1, and ::ffff:127.0.0.1, which is how Java's dual-stack IPv6 sockets show a
bind to 127.0.0.1 (the same IPv4 loopback address). Not accepted: ::1 (the services are documented
and configured on 127.0.0.1; an IPv6 loopback listener would be one nobody configured), and any
wildcard (`*`, 0.0.0.0, `[::]`).
"""

import time

import pytest

from instashop.devstack import manager
from instashop.ops.process import wait_until
from tests.support.listeners import LOOPBACK, descendants, host_of, listening
from tests.support.live_app import SHUFFLE_SERVERS_AT_LEAST, LiveApp

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def realtime_app(settings, cdc_pipeline, tmp_path_factory):
    app = LiveApp(settings, tmp_path_factory.mktemp("spark-listen") / "checkpoint", "real-time")
    try:
        app.start()
        yield app
    finally:
        app.cleanup()


def stack_pids(settings) -> dict[str, set[int]]:
    """Each service's and pid file's process and its descendants, by name."""
    trees = {}
    for pid_file in sorted((settings.var_dir / "run").glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            continue
        trees[pid_file.stem] = descendants(pid)
    for service in manager.select(settings):
        if (pid := service.pid()) is not None:
            trees[service.name] = descendants(pid)
    return trees


def test_every_listener_of_the_stack_and_its_jobs_is_on_loopback(settings, realtime_app):
    app_tree = descendants(realtime_app.job.pid())
    # The query's tasks (and their shuffle servers) run once the first batch has been planned.
    started = wait_until(lambda: len(listening(app_tree)) >= SHUFFLE_SERVERS_AT_LEAST, 120, 1)
    assert started, f"the Spark app's streaming-shuffle servers did not come up: {listening(app_tree)}"
    time.sleep(1)

    trees = stack_pids(settings)
    expected = {"supervisord", "postgres-shop", "postgres-dwh", "kafka", "redis"}
    assert expected <= set(trees), f"stack not running: {sorted(trees)}"
    outside = {
        name: sorted(
            {
                f"{address} ({command} {pid})"
                for address, command, pid in listening(tree)
                if host_of(address) not in LOOPBACK
            }
        )
        for name, tree in trees.items()
    }
    assert {name: found for name, found in outside.items() if found} == {}
