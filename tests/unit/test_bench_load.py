import pytest

from benchmarks.load import BrokenRun, LoadThread
from instashop.devstack.generator import GeneratorConfig

# Nothing listens on port 9 of loopback: the generator fails at its first connection.
UNREACHABLE = "postgresql://nobody:nothing@127.0.0.1:9/instashop?connect_timeout=2"


def test_a_load_that_failed_is_a_broken_run_with_the_reason():
    load = LoadThread(UNREACHABLE, GeneratorConfig(rate=10, duration=1))
    load.start()
    load.join(timeout=30)
    assert not load.is_alive()
    with pytest.raises(BrokenRun, match=r"the load generator failed: .*cannot connect"):
        load.summary()


def test_a_load_never_started_has_no_figures():
    with pytest.raises(BrokenRun, match="never started"):
        LoadThread(UNREACHABLE, GeneratorConfig(rate=10, duration=1)).summary()
