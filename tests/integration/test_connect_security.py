"""Kafka Connect's REST API answers only its login, and connector configs can read only the allowlisted
variables of the worker (issue 16, item 3)."""

import uuid

import pytest
import requests

from instashop.capture.connector import ConnectClient

pytestmark = pytest.mark.integration

POSTGRES_PLUGIN = "io.debezium.connector.postgresql.PostgresConnector"


def _connector_config() -> dict[str, str]:
    """A config Connect would accept (the connector is never meant to start)."""
    return {"connector.class": POSTGRES_PLUGIN, "topic.prefix": "it-unauth", "database.hostname": "127.0.0.1"}


def test_requests_without_the_login_are_refused(settings):
    base = settings.connect_url
    name = f"it-unauth-{uuid.uuid4().hex[:6]}"
    assert requests.get(f"{base}/connectors", timeout=10).status_code == 401
    assert requests.get(f"{base}/connector-plugins", timeout=10).status_code == 401
    put = requests.put(f"{base}/connectors/{name}/config", json=_connector_config(), timeout=10)
    assert put.status_code == 401
    wrong = (settings.connect_rest_user, "not-the-password")
    assert requests.get(f"{base}/connectors", auth=wrong, timeout=10).status_code == 401
    put = requests.put(f"{base}/connectors/{name}/config", json=_connector_config(), auth=wrong, timeout=10)
    assert put.status_code == 401
    # Nothing was created by the refused PUTs.
    listed = requests.get(f"{base}/connectors", auth=settings.connect_auth, timeout=10)
    assert listed.status_code == 200
    assert name not in listed.json()


def test_the_stack_client_authenticates(settings):
    plugins = requests.get(f"{settings.connect_url}/connector-plugins", auth=settings.connect_auth, timeout=10)
    assert plugins.status_code == 200
    assert POSTGRES_PLUGIN in {plugin["class"] for plugin in plugins.json()}
    assert ConnectClient(settings).state("it-no-such-connector").connector == "MISSING"


def _resolved_hostname(settings, reference: str) -> str:
    """What the worker's config providers make of `bad/<reference>` in a connector config.

    Validation resolves ${…} references exactly as a PUT connector's start does, and Debezium's
    hostname check echoes the resolved value in its error ("/" is not allowed in a hostname): the
    very channel through which an unrestricted provider would hand a secret to whoever may PUT.
    """
    config = {
        "connector.class": POSTGRES_PLUGIN,
        "name": "it-validate",
        "topic.prefix": "it",
        "database.hostname": f"bad/{reference}",
    }
    response = requests.put(
        f"{settings.connect_url}/connector-plugins/PostgresConnector/config/validate",
        json=config,
        auth=settings.connect_auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    values = [c["value"] for c in response.json()["configs"] if c.get("value")]
    (hostname,) = [value for value in values if value["name"] == "database.hostname"]
    (error,) = [e for e in hostname["errors"] if "has invalid format" in e]
    return error.split("value is invalid: ", 1)[1].split(" has invalid format", 1)[0]


def test_connector_configs_resolve_only_the_allowlisted_variables(settings):
    # The connector's own references resolve ...
    assert _resolved_hostname(settings, "${env:SHOP_POSTGRES_PORT}") == f"bad/{settings.shop_postgres_port}"
    # ... but no other variable: the reference is left as written, the secret never appears.
    for name in ("DWH_WRITER_PASSWORD", "REDIS_PASSWORD", "CONNECT_REST_PASSWORD", "PATH", "HOME"):
        assert _resolved_hostname(settings, f"${{env:{name}}}") == f"bad/${{env:{name}}}", name


def test_connectors_may_tune_their_clients_but_not_change_their_kafka_login(settings):
    config = {
        "connector.class": POSTGRES_PLUGIN,
        "name": "it-validate",
        "producer.override.linger.ms": "5",
        "producer.override.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    response = requests.put(
        f"{settings.connect_url}/connector-plugins/PostgresConnector/config/validate",
        json=config,
        auth=settings.connect_auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    errors = {c["value"]["name"]: c["value"]["errors"] for c in response.json()["configs"] if c.get("value")}
    assert errors["producer.override.linger.ms"] == []
    assert any("does not allow" in e for e in errors["producer.override.sasl.jaas.config"]), errors
