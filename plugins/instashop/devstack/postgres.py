"""PostgreSQL 15: two clusters, the shop's and the warehouse's, each on its own port.

Debezium decodes the whole WAL of the cluster it replicates, so the warehouse must not write into
that WAL: with both on one cluster, the first shop change after a 1M-row ingest waited ~60 s
behind the decoding of the warehouse's own writes. The shop cluster (`wal_level=logical`) holds
the OLTP database; the warehouse cluster holds the DWH and the metadata of Airflow and Superset.

Both run as the `postgres` OS user (the server refuses root). Roles follow least privilege and
exist only where they are used: the shop app owns the OLTP database and Debezium may only
replicate and read it; the consumer may write only the DWH tables granted to it by the
migrations, and Superset/SQL Lab get a read-only role.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import signal
import subprocess
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import psycopg2
from psycopg2 import sql

from instashop.devstack.service import Service, StackError
from instashop.settings import write_private

log = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"

COMMON_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    # Full-page images compressed with lz4: pglz (what "on" means) costs the writers a lot of CPU.
    "wal_compression": "lz4",
    "log_timezone": "'UTC'",
    "timezone": "'UTC'",
}

# Who may connect, in order of the first match. No `replication` line: physical replication (a
# pg_basebackup of every database, password hashes included) is refused to everyone; Debezium's
# logical replication connections match on their database, so it gets the shop database only.
_HBA_HEADER = """\
# written by `make up`
# TYPE  DATABASE   USER       ADDRESS        METHOD
local   all        all                       scram-sha-256
"""
_HBA_EVERYONE_ELSE = "host    all        all        127.0.0.1/32   scram-sha-256\n"


class PostgresCluster(Service):
    """One PostgreSQL cluster of the local stack; subclasses say what it holds."""

    user = OS_USER
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client.
    stop_signal = signal.SIGINT
    # (role, password key in .env, attributes)
    roles: tuple[tuple[str, str, str], ...] = ()
    # database -> owner
    databases: ClassVar[dict[str, str]] = {}
    server_settings: ClassVar[dict[str, str]] = {}
    hba_rules: str = ""
    # What `make demo` prints after the address.
    holds: str = ""

    @property
    @abstractmethod
    def admin_dsn(self) -> str:
        """The cluster's superuser on its `postgres` database."""

    @property
    @abstractmethod
    def superuser_password(self) -> str:
        """What initdb sets as the superuser's password."""

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
        _refuse_the_one_cluster_layout(self.settings.var_dir)
        self._ensure_owned_data_dir()
        if not (self.cluster_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_hba()
        conf = "\n".join(f"{key} = {value}" for key, value in {**COMMON_SETTINGS, **self.server_settings}.items())
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
            conn = psycopg2.connect(self.admin_dsn, connect_timeout=2)
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
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                for role, password_key, attributes in self.roles:
                    _ensure_role(cur, role, self.settings.env_value(password_key), attributes)
                self.configure_roles(cur)
                for database, owner in self.databases.items():
                    _ensure_database(cur, database, owner)
                self._write_hba()  # a cluster made by an older version had initdb's rules
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()

    def configure_roles(self, cur) -> None:
        """Role settings beyond attributes and passwords."""

    def urls(self) -> list[str]:
        return [f"postgresql://127.0.0.1:{self.port}  ({self.holds}; DSNs in .env)"]

    # --- internals -----------------------------------------------------------------------------

    def _ensure_owned_data_dir(self) -> None:
        """Give the postgres user a data directory it can reach.

        If the clone sits under a directory the postgres user cannot traverse (e.g. /root), the
        cluster lives under /var/lib/instashop instead and var/<name> links to it.
        """
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists():
            if _reachable_by_postgres(self.data_dir.parent):
                self.data_dir.mkdir()
            else:
                target = Path("/var/lib/instashop") / self.cluster_name / self.name
                target.mkdir(parents=True, exist_ok=True)
                self.data_dir.symlink_to(target, target_is_directory=True)
                log.info("postgres cannot reach %s: cluster lives in %s", self.data_dir.parent, target)
        shutil.chown(self.data_dir.resolve(), OS_USER, OS_USER)

    def _write_hba(self) -> None:
        hba = self.cluster_dir / "pg_hba.conf"
        if not hba.exists() or hba.read_text() != self.hba_rules:
            write_private(hba, self.hba_rules)
            shutil.chown(hba, OS_USER, OS_USER)

    def _initdb(self) -> None:
        pwfile = self.data_dir.resolve() / ".pwfile"
        write_private(pwfile, self.superuser_password + "\n")
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


class ShopPostgres(PostgresCluster):
    """The shop's OLTP database, decoded by Debezium."""

    name = "postgres-shop"
    port_key = "shop_postgres"
    holds = "database instashop"
    roles = (
        ("instashop_app", "OLTP_APP_PASSWORD", "LOGIN"),
        ("debezium", "DEBEZIUM_PASSWORD", "LOGIN REPLICATION"),
    )
    databases: ClassVar[dict[str, str]] = {"instashop": "instashop_app"}
    server_settings: ClassVar[dict[str, str]] = {
        "wal_level": "logical",
        "max_replication_slots": "10",
        "max_wal_senders": "10",
        "shared_buffers": "512MB",
    }
    hba_rules = (
        _HBA_HEADER
        + "host    instashop  debezium   127.0.0.1/32   scram-sha-256\n"
        + "host    all        debezium   127.0.0.1/32   reject\n"
        + _HBA_EVERYONE_ELSE
    )

    @property
    def admin_dsn(self) -> str:
        return self.settings.shop_admin_dsn

    @property
    def superuser_password(self) -> str:
        return self.settings.shop_postgres_superuser_password


class WarehousePostgres(PostgresCluster):
    """The DWH, and the metadata databases of Airflow and Superset."""

    name = "postgres-dwh"
    port_key = "dwh_postgres"
    holds = "databases dwh, airflow, superset"
    roles = (
        ("dwh_writer", "DWH_WRITER_PASSWORD", "LOGIN"),
        ("dwh_readonly", "DWH_READONLY_PASSWORD", "LOGIN"),
        ("dwh_maintainer", "DWH_MAINTAINER_PASSWORD", "LOGIN"),  # owns realtime_events (partition DDL)
        ("airflow", "AIRFLOW_DB_PASSWORD", "LOGIN"),
        ("superset", "SUPERSET_DB_PASSWORD", "LOGIN"),
        # Debezium's JDBC sink (benchmarks/jdbc_sink.py): creates tables in its scratch database only.
        ("jdbc_sink", "JDBC_SINK_PASSWORD", "LOGIN"),
    )
    databases: ClassVar[dict[str, str]] = {"dwh": "postgres", "airflow": "airflow", "superset": "superset"}
    server_settings: ClassVar[dict[str, str]] = {
        # Nothing decodes this WAL: `replica` keeps it lean (and physical standbys possible).
        "wal_level": "replica",
        "shared_buffers": "1GB",
        "work_mem": "32MB",
        "maintenance_work_mem": "256MB",
        # Fewer checkpoints, fewer full-page images in the WAL of a write-heavy warehouse.
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
    }
    hba_rules = _HBA_HEADER + _HBA_EVERYONE_ELSE

    @property
    def admin_dsn(self) -> str:
        return self.settings.dwh_admin_dsn

    @property
    def superuser_password(self) -> str:
        return self.settings.dwh_postgres_superuser_password

    def configure_roles(self, cur) -> None:
        cur.execute("ALTER ROLE dwh_readonly SET default_transaction_read_only = on")


def _refuse_the_one_cluster_layout(var_dir: Path) -> None:
    """An install older than the split kept the shop and the warehouse in var/postgres."""
    if (var_dir / "postgres").exists():
        raise StackError(
            f"{var_dir / 'postgres'} is the one-cluster layout of an older version (shop and warehouse "
            "together); this version runs them as two clusters. Its data cannot be split in place: "
            "run `make clean FORCE=1 && make up` for a fresh stack."
        )


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
