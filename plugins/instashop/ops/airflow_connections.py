"""The Airflow connections of the DAGs: their ids, their definitions built from `.env`, and how tasks open them.

Every Airflow process gets them as `AIRFLOW_CONN_<ID>` environment variables (see
`instashop.devstack.airflow.airflow_environment`), so no secret sits in a DAG file or the metadata
database, and the Connections page of the UI lists none that could drift from `.env`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg2
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import parse_dsn

from instashop import kafka_auth
from instashop.settings import Settings

# Partition DDL, retention and the supervisor's health records: the role that owns realtime_events.
DWH_MAINTAINER = "instashop_dwh_maintainer"
# Session-outcome backfills: the consumer's role, the one that writes customer_sessions.
DWH_WRITER = "instashop_dwh_writer"
# Reconciliation reads of the warehouse.
DWH_READONLY = "instashop_dwh_readonly"
# Reconciliation reads of the shop's database. The shop has no read-only role; the session is.
OLTP_READ = "instashop_oltp_read"
# Consumer-group lag through the admin API, as the `airflow` Kafka principal (it may only describe
# the DWH consumer's group and the CDC topics). Its group.id is Airflow's own, never the consumer's,
# so nothing started from this connection can join (and rebalance) the DWH consumer's group.
KAFKA = "instashop_kafka"
KAFKA_GROUP_ID = "instashop-airflow"
# Spark's progress heartbeat and the live metrics.
REDIS = "instashop_redis"

_READ_ONLY_SESSION = "-c default_transaction_read_only=on"


def airflow_connections(settings: Settings) -> dict[str, str]:
    """`AIRFLOW_CONN_<ID>` -> the connection as Airflow's JSON form."""
    definitions = {
        DWH_MAINTAINER: _postgres(settings.dwh_maintainer_dsn, "airflow-maintenance"),
        DWH_WRITER: _postgres(settings.dwh_dsn, "airflow-backfill"),
        DWH_READONLY: _postgres(settings.dwh_readonly_dsn, "airflow-reconciliation"),
        OLTP_READ: _postgres(settings.oltp_dsn, "airflow-reconciliation", options=_READ_ONLY_SESSION),
        KAFKA: {
            "conn_type": "kafka",
            "extra": {**kafka_auth.client_config(settings, kafka_auth.AIRFLOW), "group.id": KAFKA_GROUP_ID},
        },
        REDIS: _redis(settings.redis_live_reader_url),
    }
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in definitions.items()}


def _postgres(dsn: str, application_name: str, options: str | None = None) -> dict[str, Any]:
    parts = parse_dsn(dsn)  # URI or key=value form alike
    extra = {"application_name": application_name} | ({"options": options} if options else {})
    return {
        "conn_type": "postgres",
        "host": parts.get("host", "127.0.0.1"),
        "port": int(parts.get("port", 5432)),
        "login": parts["user"],
        "password": parts.get("password"),
        "schema": parts["dbname"],
        "extra": extra,
    }


def _redis(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "conn_type": "redis",
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "login": parts.username or None,  # an empty user would make redis-py send `AUTH "" <password>`
        "password": parts.password,
        "extra": {"db": int(parts.path.lstrip("/") or 0)},
    }


@contextmanager
def postgres(conn_id: str) -> Iterator[PgConnection]:
    """A psycopg2 connection for an Airflow connection id, closed afterwards.

    PostgresHook resolves the connection (env, secrets backend); we connect with psycopg2 ourselves
    because the hook hands out psycopg 3 connections when SQLAlchemy 2 is installed, and the
    package's SQL helpers are psycopg2 code (`psycopg2.sql`, `with conn:` = one transaction).
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).connection
    pg = psycopg2.connect(
        host=conn.host,
        port=conn.port,
        user=conn.login,
        password=conn.password,
        dbname=conn.schema,
        **conn.extra_dejson,
    )
    try:
        yield pg
    finally:
        pg.close()


def kafka_admin(conn_id: str = KAFKA):
    """confluent-kafka's AdminClient through the Kafka provider's hook."""
    from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

    return KafkaAdminClientHook(kafka_config_id=conn_id).get_conn


def redis_client(conn_id: str = REDIS):
    from airflow.providers.redis.hooks.redis import RedisHook

    return RedisHook(redis_conn_id=conn_id).get_conn()
