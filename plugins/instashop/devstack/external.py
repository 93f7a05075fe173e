"""Services the user runs, not `make up`: named in EXTERNAL_SERVICES, reached at their `.env` address.

A shop that already has its PostgreSQL, Kafka or Redis lists those services in EXTERNAL_SERVICES
(comma-separated names of `instashop stack status`) and gives their addresses in `.env`. `make up`
then starts only the others, and checks each external one answers at the address the components
use, with an error naming the key to fix. How an external shop database is prepared without a
superuser is docs/source-database.md.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg2
import redis
import requests

from instashop.devstack.service import Service, StackError
from instashop.settings import Settings

CONNECT_TIMEOUT = 5

# service name -> the .env key holding the address its clients use
ADDRESS_KEYS = {
    "postgres-shop": "OLTP_DSN",
    "postgres-dwh": "DWH_DSN",
    "redis": "REDIS_URL",
    "kafka": "KAFKA_BOOTSTRAP",
    "connect": "CONNECT_URL",
    "airflow-api-server": "AIRFLOW_URL",
    "airflow-scheduler": "AIRFLOW_URL",
    "airflow-dag-processor": "AIRFLOW_URL",
    "airflow-triggerer": "AIRFLOW_URL",
    "superset": "SUPERSET_URL",
}


def external_names(settings: Settings, known: list[str]) -> set[str]:
    """The services EXTERNAL_SERVICES names; an unknown name is refused with the known ones."""
    names = {name.strip() for name in settings.external_services.split(",") if name.strip()}
    if unknown := names - set(known):
        raise StackError(
            f"EXTERNAL_SERVICES names {', '.join(sorted(unknown))}, which the stack does not have; "
            f"known: {', '.join(known)}"
        )
    return names


def unreachable_reason(service: Service) -> str | None:
    """Why the external service does not answer at its address, or None when it does."""
    key = ADDRESS_KEYS[service.name]
    value = service.settings.env_value(key)
    check = _CHECKS.get(key, _check_http)
    try:
        check(value)
    except Exception as err:  # every client library raises its own; the message is what matters
        return f"{key} ({_without_password(key, value)}) does not answer: {str(err).strip().splitlines()[0]}"
    return None


def check_reachable(service: Service) -> None:
    if reason := unreachable_reason(service):
        raise StackError(f"{service.name} is external (EXTERNAL_SERVICES): {reason}")


def _check_postgres(dsn: str) -> None:
    psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT).close()


def _check_redis(url: str) -> None:
    redis.Redis.from_url(url, socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT).ping()


def _check_brokers(bootstrap: str) -> None:
    """At least one broker of the list accepts a connection (the client finds the others)."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
            return
        except OSError as err:
            errors.append(f"{server.strip()}: {err}")
    raise ConnectionError("; ".join(errors))


def _check_http(url: str) -> None:
    # Any HTTP answer (401 included: the service is there and wants a login).
    requests.get(url, timeout=CONNECT_TIMEOUT)


_CHECKS: dict[str, Callable[[str], None]] = {
    "OLTP_DSN": _check_postgres,
    "DWH_DSN": _check_postgres,
    "REDIS_URL": _check_redis,
    "KAFKA_BOOTSTRAP": _check_brokers,
}


def _without_password(key: str, value: str) -> str:
    if key == "KAFKA_BOOTSTRAP":
        return value
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path}"
