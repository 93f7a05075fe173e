"""A service the user runs (EXTERNAL_SERVICES) is checked, never started or stopped by `make up`.

The "external" Redis is the same binary, started here outside the stack on another port with its
own password, as a shop's own server would be.
"""

import shutil
import socket
import subprocess

import pytest

from instashop.devstack import manager
from instashop.ops.process import wait_until
from instashop.settings import load_settings

pytestmark = pytest.mark.integration

PASSWORD = "external-redis-secret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_redis():
    """A Redis server started by hand, the way a shop runs its own."""
    port = _free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", PASSWORD, "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    assert wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10, 0.1)
    yield port, server
    server.kill()
    server.wait()


@pytest.fixture
def external_redis_settings(own_redis, monkeypatch, settings):
    port, _ = own_redis
    monkeypatch.setenv("EXTERNAL_SERVICES", "redis")
    monkeypatch.setenv("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    yield load_settings()
    monkeypatch.undo()
    manager.up(settings, ["redis"])  # the stack's own Redis again, for the tests after this one


def test_an_external_service_is_checked_and_left_alone(external_redis_settings, own_redis):
    _, server = own_redis
    manager.up(external_redis_settings, ["redis"])
    (row,) = manager.status(external_redis_settings, ["redis"])
    assert (row.state, row.healthy) == ("external", True)

    manager.down(external_redis_settings, ["redis"])
    assert server.poll() is None, "make down stopped a server it does not own"


def test_an_external_service_that_does_not_answer_is_named_by_its_key(external_redis_settings, own_redis):
    _, server = own_redis
    server.kill()
    server.wait()
    with pytest.raises(manager.StackError, match=r"redis is external .*REDIS_URL \(redis://127\.0\.0\.1:\d+/0\)"):
        manager.up(external_redis_settings, ["redis"])


def test_a_service_name_the_stack_does_not_have_is_refused(monkeypatch, settings):
    monkeypatch.setenv("EXTERNAL_SERVICES", "postgres")
    with pytest.raises(manager.StackError, match="names postgres, which the stack does not have; known: postgres-shop"):
        manager.up(load_settings(), ["redis"])
