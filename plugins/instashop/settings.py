"""Settings shared by every component: `.env` plus the process environment, typed and validated.

`make setup` writes `.env` once with random secrets (instashop.devstack.env_file); every process
reads it through `load_settings()`, which checks every value at once and names the key of each bad
one (a port out of range, a DSN that is no PostgreSQL URL). Variables set in the process
environment win, so a test or an operator can override one value without editing the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from psycopg2 import ProgrammingError
from psycopg2.extensions import make_dsn, parse_dsn
from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(os.environ.get("INSTASHOP_HOME", Path(__file__).resolve().parents[2]))
ENV_FILE = REPO_ROOT / ".env"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, from its first byte (no chmod-after-write window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode is not applied to a file that already existed
    with os.fdopen(fd, "w") as f:
        f.write(text)


class SettingsError(ValueError):
    """`.env` or the environment holds a value the product cannot use; the message names each key."""


def _postgres_dsn(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql://user:password@host:port/database URL")
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is no number or out of range
        parse_dsn(value)
    except ProgrammingError as err:
        raise ValueError(f"not a valid PostgreSQL DSN ({str(err).strip()})") from None
    return value


def _url(*schemes: str):
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)}host:port URL")
        parts.port  # noqa: B018 -- raises ValueError for a port that is no number or out of range
        return value

    return check


def _bootstrap(value: str) -> str:
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{server.strip()!r} is not host:port (a comma-separated list of brokers)")
    return value


Port = Annotated[int, Field(ge=1, le=65535)]
PostgresDsn = Annotated[str, AfterValidator(_postgres_dsn), Field(repr=False)]
HttpUrl = Annotated[str, AfterValidator(_url("http", "https"))]
RedisUrl = Annotated[str, AfterValidator(_url("redis", "rediss")), Field(repr=False)]
Secret = Annotated[str, Field(min_length=1, repr=False)]


class Settings(BaseSettings):
    """Every address, login and secret the components use, one typed attribute per `.env` key."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file_encoding="utf-8")

    # Ports of the local stack's services (all bound to 127.0.0.1). The shop and the warehouse
    # are separate PostgreSQL clusters: warehouse writes must stay out of the WAL Debezium decodes.
    shop_postgres_port: Port
    dwh_postgres_port: Port
    kafka_port: Port
    kafka_controller_port: Port
    connect_port: Port
    redis_port: Port
    airflow_port: Port
    superset_port: Port
    spark_ui_port: Port
    supervisor_port: Port

    # Logins
    airflow_admin_user: str
    airflow_admin_password: Secret
    superset_admin_user: str
    superset_admin_password: Secret
    connect_rest_user: str
    connect_rest_password: Secret
    supervisor_user: str
    supervisor_password: Secret

    # PostgreSQL roles' passwords (the DSNs below carry them; these are for the set-up of the roles)
    shop_postgres_superuser_password: Secret
    dwh_postgres_superuser_password: Secret
    oltp_app_password: Secret
    debezium_password: Secret
    dwh_writer_password: Secret
    dwh_readonly_password: Secret
    dwh_maintainer_password: Secret
    airflow_db_password: Secret
    superset_db_password: Secret
    jdbc_sink_password: Secret

    # Redis users' passwords (default = the operator; see the URLs below)
    redis_password: Secret
    redis_live_writer_password: Secret
    redis_live_reader_password: Secret
    redis_superset_password: Secret

    # Kafka principals (SASL/SCRAM; see instashop.kafka_auth)
    kafka_broker_password: Secret
    kafka_admin_password: Secret
    kafka_connect_password: Secret
    kafka_consumer_password: Secret
    kafka_spark_password: Secret
    kafka_airflow_password: Secret

    # Other secrets
    airflow_jwt_secret: Secret
    airflow_api_secret_key: Secret
    superset_secret_key: Secret
    spark_auth_secret: Secret

    # Where each component connects
    shop_admin_dsn: PostgresDsn
    dwh_admin_dsn: PostgresDsn
    oltp_dsn: PostgresDsn
    dwh_dsn: PostgresDsn
    dwh_readonly_dsn: PostgresDsn
    dwh_maintainer_dsn: PostgresDsn
    airflow_db_dsn: PostgresDsn
    superset_db_dsn: PostgresDsn
    kafka_bootstrap: Annotated[str, AfterValidator(_bootstrap)]
    connect_url: HttpUrl
    redis_url: RedisUrl
    redis_live_writer_url: RedisUrl
    redis_live_reader_url: RedisUrl
    redis_superset_url: RedisUrl
    airflow_url: HttpUrl
    superset_url: HttpUrl
    supervisor_url: HttpUrl

    # Services the user runs, by name (`instashop stack status`): `make up` checks them, starts the rest.
    external_services: str = ""

    # Runtime state of the local stack: data, logs and pid files (git-ignored)
    instashop_var: Path = REPO_ROOT / "var"

    def port(self, service: str) -> int:
        """The port of a local service by its `.env` prefix (`shop_postgres`, `kafka`, ...)."""
        return getattr(self, f"{service.lower()}_port")

    def env_value(self, key: str) -> str:
        """One setting by its `.env` name, for the places that hand it on under that name (a
        service's environment, a role or principal whose password key a table names)."""
        value = getattr(self, key.lower(), None)
        if value is None or key.lower() not in type(self).model_fields:
            raise KeyError(f"{key} is not a setting of {ENV_FILE}")
        return str(value)

    def shop_admin(self, database: str = "instashop") -> str:
        """The shop cluster's superuser on one of its databases (OLTP migrations, tests)."""
        return make_dsn(self.shop_admin_dsn, dbname=database)

    def dwh_admin(self, database: str = "dwh") -> str:
        """The warehouse cluster's superuser on one of its databases (DWH migrations, benchmarks)."""
        return make_dsn(self.dwh_admin_dsn, dbname=database)

    @property
    def connect_auth(self) -> tuple[str, str]:
        """The Kafka Connect REST login (HTTP basic auth) that every client of its API sends."""
        return self.connect_rest_user, self.connect_rest_password

    @property
    def var_dir(self) -> Path:
        return self.instashop_var

    @property
    def repo_root(self) -> Path:
        return REPO_ROOT

    @property
    def jars_dir(self) -> Path:
        """The JVM jars `make setup` resolved from Maven Central (a link to the cache)."""
        return REPO_ROOT / ".jars"

    @property
    def main_venv(self) -> Path:
        return REPO_ROOT / ".venv"

    @property
    def superset_venv(self) -> Path:
        return REPO_ROOT / ".venv-superset"


def load_settings(env_file: Path = ENV_FILE) -> Settings:
    """`.env` (its ${VAR} references expanded) under the process environment, validated at once."""
    if not env_file.exists():
        raise FileNotFoundError(f"{env_file} is missing: run `make setup` first")
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors(include_url=False)]
        raise SettingsError(f"{env_file} (or the environment) has bad settings: " + "; ".join(problems)) from None
