"""The Debezium connector that captures the shop's database, managed through the Connect REST API.

Its configuration lives in `instashop-oltp.json` beside this module; secrets and ports in it are
`${env:…}` references that the Connect worker resolves (EnvVarConfigProvider), so the REST API
never shows a password. Every request carries the REST login (CONNECT_REST_USER/_PASSWORD).
`register` is idempotent: it creates, updates a changed configuration, or leaves a current one alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from instashop.settings import Settings

CONNECTOR_NAME = "instashop-oltp"
CONFIG_FILE = Path(__file__).with_name(f"{CONNECTOR_NAME}.json")
TOPIC_PREFIX = "instashop"
# How long a request is retried while the worker rebalances (after every configuration change).
REBALANCE_WAIT = 30.0
# Every CDC topic of the shop's tables (Debezium names them <prefix>.<schema>.<table>).
CDC_TOPIC_PATTERN = rf"^{TOPIC_PREFIX}\.public\..+"


class ConnectError(RuntimeError):
    pass


class NotReady(ConnectError):
    """The shop's database is not ready to be captured (its migrations have not run)."""


@dataclass(frozen=True)
class ConnectorState:
    connector: str  # RUNNING, PAUSED, FAILED, UNASSIGNED, or MISSING when not registered
    tasks: list[str]
    trace: str | None = None

    @property
    def healthy(self) -> bool:
        return self.connector == "RUNNING" and bool(self.tasks) and all(t == "RUNNING" for t in self.tasks)


class ConnectClient:
    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.base = settings.connect_url.rstrip("/")
        self.auth = settings.connect_auth  # the REST API refuses requests without it (401)
        self.timeout = timeout

    def register(self, name: str = CONNECTOR_NAME, config: dict[str, Any] | None = None) -> str:
        """Create the connector, or update it if its configuration differs: created, updated or unchanged.

        Only a changed configuration is PUT: Connect restarts the connector on every PUT, even of an
        unchanged configuration, which `make demo` and `make bench` would do each time.
        """
        config = config if config is not None else load_config()
        current = self._call("GET", f"/connectors/{name}/config", ok=(200, 404))
        if current.status_code == 200 and {k: v for k, v in current.json().items() if k != "name"} == config:
            return "unchanged"
        if "publication.name" in config:  # a Debezium source; a sink (the benchmark's) has none
            check_publication(self.settings, config)
        response = self._call("PUT", f"/connectors/{name}/config", json=config)
        return "created" if response.status_code == 201 else "updated"

    def state(self, name: str = CONNECTOR_NAME) -> ConnectorState:
        response = self._call("GET", f"/connectors/{name}/status", ok=(200, 404))
        if response.status_code == 404:
            return ConnectorState("MISSING", [])
        body = response.json()
        tasks = body.get("tasks", [])
        trace = next((t.get("trace") for t in tasks if t.get("trace")), body["connector"].get("trace"))
        return ConnectorState(body["connector"]["state"], [t["state"] for t in tasks], trace)

    def restart(self, name: str = CONNECTOR_NAME) -> None:
        """Restart the connector and all its tasks (Connect's restart endpoint)."""
        self._call("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=false", ok=(202, 204))

    def delete(self, name: str = CONNECTOR_NAME) -> None:
        self._call("DELETE", f"/connectors/{name}", ok=(204, 404))

    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs) -> requests.Response:
        deadline = time.monotonic() + REBALANCE_WAIT
        while True:
            try:
                response = requests.request(method, self.base + path, auth=self.auth, timeout=self.timeout, **kwargs)
            except requests.RequestException as err:
                raise ConnectError(f"Kafka Connect at {self.base} is unreachable: {err}") from None
            if response.status_code in ok:
                return response
            if not (_rebalancing(response) and time.monotonic() < deadline):
                raise ConnectError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
            time.sleep(0.5)


def _rebalancing(response: requests.Response) -> bool:
    """Whether the worker refused the request because it is rebalancing, as it does for a moment
    after every configuration change: 409 "... rebalance is in process" or 500 "... a rebalance is
    expected"."""
    return response.status_code in (409, 500) and "rebalance" in response.text


def load_config() -> dict[str, Any]:
    return json.loads(CONFIG_FILE.read_text())


def captured_tables(config: dict[str, Any]) -> list[str]:
    """The `schema.table` names the connector captures (its table.include.list)."""
    return [t.strip() for t in config["table.include.list"].split(",") if t.strip()]


def check_publication(settings: Settings, config: dict[str, Any]) -> None:
    """Raise NotReady unless the connector's publication exists and covers every captured table.

    The publication is created by the OLTP migrations (`instashop db migrate`; the connector may
    not create it, publication.autocreate.mode=disabled). Registered before it exists, the
    connector fails and has to be restarted by hand or by the supervisor.
    """
    import psycopg2

    publication = config["publication.name"]
    try:
        with psycopg2.connect(settings.oltp_dsn, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s", (publication,)
            )
            published = {row[0] for row in cur.fetchall()}
        conn.close()
    except psycopg2.Error as err:
        raise NotReady(f"the shop's database is not reachable ({str(err).strip()}): run `make up`") from None
    missing = [t for t in captured_tables(config) if t not in published]
    if missing:
        raise NotReady(
            f"publication {publication} does not publish {', '.join(missing)} yet: "
            "run `instashop db migrate` before registering the connector"
        )
