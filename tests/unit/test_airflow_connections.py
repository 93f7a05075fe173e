"""The DAGs' Airflow connections are built from .env: complete, and without credentials in odd places."""

import json

from instashop.devstack.airflow import airflow_environment
from instashop.devstack.env_file import write_env_file
from instashop.ops import airflow_connections as conns
from instashop.settings import load_settings


def _settings(tmp_path, text: str | None = None):
    env = tmp_path / ".env"
    write_env_file(env)
    if text is not None:
        env.write_text(text)
    return load_settings(env)


def test_every_connection_is_defined_as_json(tmp_path):
    settings = _settings(tmp_path)
    defined = conns.airflow_connections(settings)
    ids = (conns.DWH_MAINTAINER, conns.DWH_WRITER, conns.DWH_READONLY, conns.OLTP_READ, conns.KAFKA, conns.REDIS)
    assert set(defined) == {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in ids}
    maintainer = json.loads(defined["AIRFLOW_CONN_INSTASHOP_DWH_MAINTAINER"])
    assert (maintainer["login"], maintainer["schema"], maintainer["port"]) == ("dwh_maintainer", "dwh", 5433)
    assert maintainer["password"] == settings.dwh_maintainer_password
    oltp = json.loads(defined["AIRFLOW_CONN_INSTASHOP_OLTP_READ"])
    assert oltp["extra"]["options"] == "-c default_transaction_read_only=on" and oltp["port"] == 5432
    kafka = json.loads(defined["AIRFLOW_CONN_INSTASHOP_KAFKA"])
    assert kafka["extra"] == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "airflow",
        "sasl.password": settings.kafka_airflow_password,
        "group.id": "instashop-airflow",
    }
    redis = json.loads(defined["AIRFLOW_CONN_INSTASHOP_REDIS"])
    # Airflow only reads the live metrics (supervisor, reconciliation): the live_reader ACL user.
    expected = ("live_reader", settings.redis_live_reader_password, {"db": 0})
    assert (redis["login"], redis["password"], redis["extra"]) == expected


def test_airflow_processes_get_the_connections(tmp_path):
    settings = _settings(tmp_path)
    env = airflow_environment(settings)
    assert json.loads(env["AIRFLOW_CONN_INSTASHOP_DWH_WRITER"])["login"] == "dwh_writer"
