"""Superset answers on loopback, lets the .env admin in through its REST API and refuses a wrong password."""

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from instashop.settings import Settings, load_settings

pytestmark = pytest.mark.integration

TIMEOUT = 30  # a cold worker's first API call loads a lot of Superset


@pytest.fixture(scope="module")
def env() -> Settings:
    return load_settings()


def _login(env: Settings, password: str) -> requests.Response:
    login = {"username": env.superset_admin_user, "password": password, "provider": "db", "refresh": True}
    return requests.post(f"{env.superset_url}/api/v1/security/login", json=login, timeout=TIMEOUT)


def test_health_says_ok(env):
    response = requests.get(f"{env.superset_url}/health", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text.strip() == "OK"


def test_admin_logs_in_and_reads_the_api(env):
    response = _login(env, env.superset_admin_password)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["access_token"] and tokens["refresh_token"]

    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = requests.get(f"{env.superset_url}/api/v1/me/", headers=headers, timeout=TIMEOUT)
    assert me.status_code == 200, me.text
    assert me.json()["result"]["username"] == env.superset_admin_user
    databases = requests.get(f"{env.superset_url}/api/v1/database/", headers=headers, timeout=TIMEOUT)
    assert databases.status_code == 200, databases.text


def test_api_refuses_requests_without_a_token(env):
    assert requests.get(f"{env.superset_url}/api/v1/database/", timeout=TIMEOUT).status_code == 401


def test_wrong_password_is_refused(env):
    response = _login(env, env.superset_admin_password + "-wrong")
    assert response.status_code == 401
    assert "access_token" not in response.text


def test_listens_only_on_loopback(env):
    port = env.port("superset")
    listeners = _listening_addresses(port)
    assert listeners, f"nothing listens on port {port}"
    assert listeners == {"127.0.0.1"}


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket listening on port, from /proc/net (no `ss` needed)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(_decode(address))
    return found


def _decode(address: str) -> str:
    raw = bytes.fromhex(address)
    if len(raw) == 4:  # little-endian IPv4
        return ".".join(str(b) for b in reversed(raw))
    return "ipv6:" + address  # any IPv6 listener is a failure here; its exact text does not matter


@pytest.mark.parametrize("where", ["api", "form"])
def test_password_guessing_is_rate_limited(env, where):
    """A burst of wrong passwords gets 429 after AUTH_RATE_LIMIT (5 a second), on the REST login and
    on the login form's POST alike; a second later the right password works again."""
    wrong = env.superset_admin_password + "-guess"
    if where == "api":
        attempt = lambda _: _login(env, wrong).status_code  # noqa: E731
    else:  # as a browser would: the form's CSRF token from the login page, in its session
        session = requests.Session()
        page = session.get(f"{env.superset_url}/login/", timeout=TIMEOUT).text
        token = re.search(r'csrf_token[^>]*value="([^"]+)"', page).group(1)
        form = {"username": env.superset_admin_user, "password": wrong, "csrf_token": token}
        url = f"{env.superset_url}/login/"
        attempt = lambda _: session.post(url, data=form, timeout=TIMEOUT, allow_redirects=False).status_code  # noqa: E731
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert 429 in codes, codes
    time.sleep(1.5)  # the limit's window is one second
    assert _login(env, env.superset_admin_password).status_code == 200
