"""Settings shared by every component, read from the repo's `.env`.

`make setup` writes `.env` once with random secrets (see `write_env_file`); every process reads
it through `load_settings()`. Variables already set in the process environment win, so a test
or an operator can override one value without editing the file.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from dotenv import dotenv_values
from psycopg2.extensions import make_dsn

REPO_ROOT = Path(os.environ.get("INSTASHOP_HOME", Path(__file__).resolve().parents[2]))
ENV_FILE = REPO_ROOT / ".env"

# Passwords are URL-safe so they can sit inside DSNs and URLs unquoted.
_SECRET_KEYS = (
    "POSTGRES_SUPERUSER_PASSWORD",
    "OLTP_APP_PASSWORD",
    "DEBEZIUM_PASSWORD",
    "DWH_WRITER_PASSWORD",
    "DWH_READONLY_PASSWORD",
    "DWH_MAINTAINER_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "SUPERSET_DB_PASSWORD",
    "REDIS_PASSWORD",
    "REDIS_LIVE_WRITER_PASSWORD",
    "REDIS_LIVE_READER_PASSWORD",
    "REDIS_SUPERSET_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "SUPERSET_ADMIN_PASSWORD",
    "SUPERSET_SECRET_KEY",
    # Kafka Connect's REST API (HTTP basic auth, see stack/kafka.py).
    "CONNECT_REST_PASSWORD",
    # Kafka principals (SASL/SCRAM; see instashop.kafka_auth): the broker itself, the stack's admin,
    # and one per component.
    "KAFKA_BROKER_PASSWORD",
    "KAFKA_ADMIN_PASSWORD",
    "KAFKA_CONNECT_PASSWORD",
    "KAFKA_CONSUMER_PASSWORD",
    "KAFKA_SPARK_PASSWORD",
    "KAFKA_AIRFLOW_PASSWORD",
    # PostgreSQL role of the Debezium JDBC sink (the benchmarks' peer), the only one it may use.
    "JDBC_SINK_PASSWORD",
    # spark.authenticate with a master other than local[...] (local mode generates its own)
    "SPARK_AUTH_SECRET",
)

_ENV_TEMPLATE = """\
# InstaShop DWH local stack. Written once by `make setup`; never committed (it holds secrets).
# Change a port here and run `make down && make up`. ${{VAR}} references are expanded on load.

# Ports (all services bind to 127.0.0.1)
POSTGRES_PORT=5432
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
CONNECT_PORT=8083
REDIS_PORT=6379
AIRFLOW_PORT=8080
SUPERSET_PORT=8088
SPARK_UI_PORT=4040

# Logins of the web UIs
AIRFLOW_ADMIN_USER=admin
SUPERSET_ADMIN_USER=admin
CONNECT_REST_USER=instashop

# Random secrets
{secrets}

# Connection strings used by the components
POSTGRES_ADMIN_DSN=postgresql://postgres:${{POSTGRES_SUPERUSER_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/postgres
OLTP_DSN=postgresql://instashop_app:${{OLTP_APP_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/instashop
DWH_DSN=postgresql://dwh_writer:${{DWH_WRITER_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/dwh
DWH_READONLY_DSN=postgresql://dwh_readonly:${{DWH_READONLY_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/dwh
DWH_MAINTAINER_DSN=postgresql://dwh_maintainer:${{DWH_MAINTAINER_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/dwh
AIRFLOW_DB_DSN=postgresql://airflow:${{AIRFLOW_DB_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/airflow
SUPERSET_DB_DSN=postgresql://superset:${{SUPERSET_DB_PASSWORD}}@127.0.0.1:${{POSTGRES_PORT}}/superset
KAFKA_BOOTSTRAP=127.0.0.1:${{KAFKA_PORT}}
CONNECT_URL=http://127.0.0.1:${{CONNECT_PORT}}
REDIS_URL=redis://:${{REDIS_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/0
REDIS_LIVE_WRITER_URL=redis://live_writer:${{REDIS_LIVE_WRITER_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/0
REDIS_LIVE_READER_URL=redis://live_reader:${{REDIS_LIVE_READER_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/0
REDIS_SUPERSET_URL=redis://superset:${{REDIS_SUPERSET_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/1
AIRFLOW_URL=http://127.0.0.1:${{AIRFLOW_PORT}}
SUPERSET_URL=http://127.0.0.1:${{SUPERSET_PORT}}
"""


def write_env_file(path: Path = ENV_FILE) -> list[str]:
    """Create `.env` with fresh random secrets, or append the keys an older one lacks.

    Existing values are never changed; returns the keys written.
    """
    secret_lines = "\n".join(f"{key}={secrets.token_urlsafe(24)}" for key in _SECRET_KEYS)
    template = _ENV_TEMPLATE.format(secrets=secret_lines)
    if not path.exists():
        write_private(path, template)
        return [line.split("=", 1)[0] for line in template.splitlines() if _is_setting(line)]
    present = {line.split("=", 1)[0] for line in path.read_text().splitlines() if _is_setting(line)}
    missing = [line for line in template.splitlines() if _is_setting(line) and line.split("=", 1)[0] not in present]
    if missing:
        with path.open("a") as f:
            f.write("\n# added by a later `make setup`\n" + "\n".join(missing) + "\n")
    return [line.split("=", 1)[0] for line in missing]


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, from its first byte (no chmod-after-write window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode is not applied to a file that already existed
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _is_setting(line: str) -> bool:
    return "=" in line and not line.lstrip().startswith("#")


@dataclass(frozen=True)
class Settings:
    """Typed view of `.env` plus the process environment."""

    values: dict[str, str] = field(repr=False)  # holds passwords: kept out of tracebacks

    def __getitem__(self, key: str) -> str:
        try:
            return self.values[key]
        except KeyError:
            raise KeyError(f"{key} is not set in {ENV_FILE} nor in the environment") from None

    def port(self, name: str) -> int:
        return int(self[f"{name.upper()}_PORT"])

    def admin_dsn(self, database: str) -> str:
        """The superuser's DSN on another database (migrations, partition maintenance)."""
        return make_dsn(self["POSTGRES_ADMIN_DSN"], dbname=database)

    @property
    def connect_auth(self) -> tuple[str, str]:
        """The Kafka Connect REST login (HTTP basic auth) that every client of its API sends."""
        return self["CONNECT_REST_USER"], self["CONNECT_REST_PASSWORD"]

    @cached_property
    def var_dir(self) -> Path:
        """Runtime state of the local stack: data, logs and pid files (git-ignored)."""
        return Path(self.values.get("INSTASHOP_VAR", REPO_ROOT / "var"))

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
    if not env_file.exists():
        raise FileNotFoundError(f"{env_file} is missing: run `make setup` first")
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    values.update({k: v for k, v in os.environ.items() if k in values or k == "INSTASHOP_VAR"})
    return Settings(values)
