"""PostgreSQL 15: one cluster for the OLTP database, the DWH and the metadata of Airflow and Superset.

Runs as the `postgres` OS user (the server refuses root) with `wal_level=logical` for Debezium.
Roles follow least privilege: the shop app owns the OLTP database, Debezium may only replicate
and read it, the consumer may write only the DWH tables granted to it by the migrations, and
Superset/SQL Lab get a read-only role.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from instashop.devstack.service import Service
from instashop.settings import write_private

log = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"

# (role, password key in .env, attributes)
ROLES = (
    ("instashop_app", "OLTP_APP_PASSWORD", "LOGIN"),
    ("debezium", "DEBEZIUM_PASSWORD", "LOGIN REPLICATION"),
    ("dwh_writer", "DWH_WRITER_PASSWORD", "LOGIN"),
    ("dwh_readonly", "DWH_READONLY_PASSWORD", "LOGIN"),
    ("dwh_maintainer", "DWH_MAINTAINER_PASSWORD", "LOGIN"),  # owns realtime_events (partition DDL)
    ("airflow", "AIRFLOW_DB_PASSWORD", "LOGIN"),
    ("superset", "SUPERSET_DB_PASSWORD", "LOGIN"),
    # Debezium's JDBC sink (benchmarks/jdbc_sink.py): creates tables in its scratch database only.
    ("jdbc_sink", "JDBC_SINK_PASSWORD", "LOGIN"),
)
# database -> owner
DATABASES = {"instashop": "instashop_app", "dwh": "postgres", "airflow": "airflow", "superset": "superset"}

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "max_connections": "200",
    "shared_buffers": "1GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    # Full-page images compressed with lz4: pglz (what "on" means) costs the ingest a lot of CPU.
    "wal_compression": "lz4",
    "max_wal_size": "4GB",
    # Fewer checkpoints, fewer full-page images in the WAL of a write-heavy warehouse.
    "checkpoint_timeout": "15min",
    "log_timezone": "'UTC'",
    "timezone": "'UTC'",
}

# Who may connect, in order of the first match. No `replication` line: physical replication (a
# pg_basebackup of every database, password hashes included) is refused to everyone; Debezium's
# logical replication connections match on their database, so it gets the shop database only.
HBA_RULES = """\
# written by `make up`
# TYPE  DATABASE   USER       ADDRESS        METHOD
local   all        all                       scram-sha-256
host    instashop  debezium   127.0.0.1/32   scram-sha-256
host    all        debezium   127.0.0.1/32   reject
host    all        all        127.0.0.1/32   scram-sha-256
"""


class Postgres(Service):
    name = "postgres"
    port_key = "postgres"
    user = OS_USER
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client.
    stop_signal = signal.SIGINT

    @property
    def data_dir(self) -> Path:
        return self.settings.var_dir / "postgres"

    @property
    def cluster_dir(self) -> Path:
        # Resolved: the postgres user may be unable to traverse the clone (see _ensure_owned_data_dir).
        return self.data_dir.resolve() / "data"

    @property
    def cluster_name(self) -> str:
        """Unique per clone; shown in `ps` and recognised by the pid-file check."""
        digest = hashlib.sha256(str(self.data_dir.absolute()).encode()).hexdigest()[:12]
        return f"instashop-{digest}"

    def marker(self) -> str:
        return f"cluster_name={self.cluster_name}"

    def command(self) -> list[str]:
        return [
            str(PG_BIN / "postgres"),
            "-D",
            str(self.cluster_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.data_dir.resolve()),
            "-c",
            f"cluster_name={self.cluster_name}",
        ]

    def prepare(self) -> None:
        self._ensure_owned_data_dir()
        if not (self.cluster_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_hba()
        conf = "\n".join(f"{key} = {value}" for key, value in SERVER_SETTINGS.items())
        settings_file = self.cluster_dir / "instashop.conf"
        settings_file.write_text(f"# written by `make up`\n{conf}\n")
        shutil.chown(settings_file, OS_USER, OS_USER)  # made private by our umask: the server must read it
        include = "include_if_exists = 'instashop.conf'"
        main_conf = self.cluster_dir / "postgresql.conf"
        if include not in main_conf.read_text():
            with main_conf.open("a") as f:
                f.write(f"\n{include}\n")

    def is_healthy(self) -> bool:
        try:
            conn = psycopg2.connect(self.settings.postgres_admin_dsn, connect_timeout=2)
        except psycopg2.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except psycopg2.Error:
            return False
        finally:
            conn.close()

    def bootstrap(self) -> None:
        conn = psycopg2.connect(self.settings.postgres_admin_dsn)
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                for role, password_key, attributes in ROLES:
                    _ensure_role(cur, role, self.settings.env_value(password_key), attributes)
                cur.execute("ALTER ROLE dwh_readonly SET default_transaction_read_only = on")
                for database, owner in DATABASES.items():
                    _ensure_database(cur, database, owner)
                self._write_hba()  # a cluster made by an older version had initdb's rules
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()

    def urls(self) -> list[str]:
        return [f"postgresql://127.0.0.1:{self.port}  (databases instashop, dwh; DSNs in .env)"]

    # --- internals -----------------------------------------------------------------------------

    def _ensure_owned_data_dir(self) -> None:
        """Give the postgres user a data directory it can reach.

        If the clone sits under a directory the postgres user cannot traverse (e.g. /root), the
        cluster lives under /var/lib/instashop instead and var/postgres links to it.
        """
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists():
            if _reachable_by_postgres(self.data_dir.parent):
                self.data_dir.mkdir()
            else:
                target = Path("/var/lib/instashop") / self.cluster_name / "postgres"
                target.mkdir(parents=True, exist_ok=True)
                self.data_dir.symlink_to(target, target_is_directory=True)
                log.info("postgres cannot reach %s: cluster lives in %s", self.data_dir.parent, target)
        shutil.chown(self.data_dir.resolve(), OS_USER, OS_USER)

    def _write_hba(self) -> None:
        hba = self.cluster_dir / "pg_hba.conf"
        if not hba.exists() or hba.read_text() != HBA_RULES:
            write_private(hba, HBA_RULES)
            shutil.chown(hba, OS_USER, OS_USER)

    def _initdb(self) -> None:
        pwfile = self.data_dir.resolve() / ".pwfile"
        write_private(pwfile, self.settings.postgres_superuser_password + "\n")
        shutil.chown(pwfile, OS_USER, OS_USER)
        try:
            subprocess.run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.cluster_dir),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                user=OS_USER,
                group=OS_USER,
                cwd=self.data_dir.resolve(),
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"initdb failed:\n{err.stdout}\n{err.stderr}") from err
        finally:
            pwfile.unlink(missing_ok=True)


def _reachable_by_postgres(path: Path) -> bool:
    """True if the postgres user can traverse path (and so every directory above it)."""
    return subprocess.run(["test", "-x", str(path)], user=OS_USER, check=False).returncode == 0


def _ensure_role(cur, role: str, password: str, attributes: str) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    # Attributes are constants of this module, never user input.
    cur.execute(
        sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
            sql.SQL(verb), sql.Identifier(role), sql.SQL(attributes), sql.Literal(password)
        )
    )


def _ensure_database(cur, database: str, owner: str) -> None:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    if not cur.fetchone():
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner)))
        log.info("created database %s (owner %s)", database, owner)
