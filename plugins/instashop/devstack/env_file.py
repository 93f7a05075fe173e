"""The local stack's `.env`: written once by `make setup` with random secrets, completed by later ones."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from instashop.settings import ENV_FILE, write_private

log = logging.getLogger(__name__)

# Passwords are URL-safe so they can sit inside DSNs and URLs unquoted.
_SECRET_KEYS = (
    "SHOP_POSTGRES_SUPERUSER_PASSWORD",
    "DWH_POSTGRES_SUPERUSER_PASSWORD",
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
    # supervisord's XML-RPC API (the process manager of the local services; HTTP basic auth)
    "SUPERVISOR_PASSWORD",
    # spark.authenticate with a master other than local[...] (local mode generates its own)
    "SPARK_AUTH_SECRET",
)

_ENV_TEMPLATE = """\
# InstaShop DWH local stack. Written once by `make setup`; never committed (it holds secrets).
# Change a port here and run `make down && make up`. ${{VAR}} references are expanded on load.

# Ports (all services bind to 127.0.0.1). The shop and the warehouse are two PostgreSQL clusters.
SHOP_POSTGRES_PORT=5432
DWH_POSTGRES_PORT=5433
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
CONNECT_PORT=8083
REDIS_PORT=6379
AIRFLOW_PORT=8080
SUPERSET_PORT=8088
SPARK_UI_PORT=4040
SUPERVISOR_PORT=9001

# Services you run yourself (comma-separated names of `instashop stack status`, e.g.
# postgres-shop,kafka): `make up` does not start them, it checks they answer at the addresses below.
EXTERNAL_SERVICES=

# Logins of the web UIs
AIRFLOW_ADMIN_USER=admin
SUPERSET_ADMIN_USER=admin
CONNECT_REST_USER=instashop
SUPERVISOR_USER=instashop

# Random secrets
{secrets}

# Connection strings used by the components
SHOP_ADMIN_DSN=postgresql://postgres:${{SHOP_POSTGRES_SUPERUSER_PASSWORD}}@127.0.0.1:${{SHOP_POSTGRES_PORT}}/postgres
DWH_ADMIN_DSN=postgresql://postgres:${{DWH_POSTGRES_SUPERUSER_PASSWORD}}@127.0.0.1:${{DWH_POSTGRES_PORT}}/postgres
OLTP_DSN=postgresql://instashop_app:${{OLTP_APP_PASSWORD}}@127.0.0.1:${{SHOP_POSTGRES_PORT}}/instashop
DWH_DSN=postgresql://dwh_writer:${{DWH_WRITER_PASSWORD}}@127.0.0.1:${{DWH_POSTGRES_PORT}}/dwh
DWH_READONLY_DSN=postgresql://dwh_readonly:${{DWH_READONLY_PASSWORD}}@127.0.0.1:${{DWH_POSTGRES_PORT}}/dwh
DWH_MAINTAINER_DSN=postgresql://dwh_maintainer:${{DWH_MAINTAINER_PASSWORD}}@127.0.0.1:${{DWH_POSTGRES_PORT}}/dwh
AIRFLOW_DB_DSN=postgresql://airflow:${{AIRFLOW_DB_PASSWORD}}@127.0.0.1:${{DWH_POSTGRES_PORT}}/airflow
SUPERSET_DB_DSN=postgresql://superset:${{SUPERSET_DB_PASSWORD}}@127.0.0.1:${{DWH_POSTGRES_PORT}}/superset
KAFKA_BOOTSTRAP=127.0.0.1:${{KAFKA_PORT}}
CONNECT_URL=http://127.0.0.1:${{CONNECT_PORT}}
REDIS_URL=redis://:${{REDIS_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/0
REDIS_LIVE_WRITER_URL=redis://live_writer:${{REDIS_LIVE_WRITER_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/0
REDIS_LIVE_READER_URL=redis://live_reader:${{REDIS_LIVE_READER_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/0
REDIS_SUPERSET_URL=redis://superset:${{REDIS_SUPERSET_PASSWORD}}@127.0.0.1:${{REDIS_PORT}}/1
AIRFLOW_URL=http://127.0.0.1:${{AIRFLOW_PORT}}
SUPERSET_URL=http://127.0.0.1:${{SUPERSET_PORT}}
SUPERVISOR_URL=http://127.0.0.1:${{SUPERVISOR_PORT}}
"""


# Keys of the one-cluster layout (the shop and the warehouse shared a PostgreSQL server), and the
# reference by which a DSN of that layout pointed at it.
_RETIRED_KEYS = ("POSTGRES_PORT", "POSTGRES_SUPERUSER_PASSWORD", "POSTGRES_ADMIN_DSN")
_RETIRED_REFERENCE = "${POSTGRES_PORT}"


def write_env_file(path: Path = ENV_FILE) -> list[str]:
    """Create `.env` with fresh random secrets, or append the keys an older one lacks.

    Existing values are never changed, except those of the one-cluster layout: its retired keys and
    the DSNs that pointed at its port are replaced by the two-cluster ones. Returns the keys written.
    """
    secret_lines = "\n".join(f"{key}={secrets.token_urlsafe(24)}" for key in _SECRET_KEYS)
    template = _ENV_TEMPLATE.format(secrets=secret_lines)
    if not path.exists():
        write_private(path, template)
        return [line.split("=", 1)[0] for line in template.splitlines() if _is_setting(line)]
    _retire_one_cluster_layout(path)
    present = {line.split("=", 1)[0] for line in path.read_text().splitlines() if _is_setting(line)}
    missing = [line for line in template.splitlines() if _is_setting(line) and line.split("=", 1)[0] not in present]
    if missing:
        with path.open("a") as f:
            f.write("\n# added by a later `make setup`\n" + "\n".join(missing) + "\n")
    return [line.split("=", 1)[0] for line in missing]


def _retire_one_cluster_layout(path: Path) -> None:
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not (_is_setting(line) and _is_retired(line))]
    if len(kept) != len(lines):
        log.info("%s: moving from one PostgreSQL cluster to two (shop and warehouse)", path)
        write_private(path, "\n".join(kept) + "\n")


def _is_retired(line: str) -> bool:
    key, value = line.split("=", 1)
    return key.strip() in _RETIRED_KEYS or _RETIRED_REFERENCE in value


def _is_setting(line: str) -> bool:
    return "=" in line and not line.lstrip().startswith("#")
