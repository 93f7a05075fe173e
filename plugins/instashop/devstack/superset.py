"""Apache Superset 6.1: dashboards and SQL Lab over the DWH, served by gunicorn.

Superset needs SQLAlchemy<2 and so lives in its own virtual environment (`.venv-superset`): this
module only runs that venv's binaries. Its configuration is `superset/superset_config.py`, which
reads `.env` itself. Before each start, and each time only if something it depends on changed:
- the metadata DB (database `superset` on the stack's Postgres) is migrated and given its admin;
- the dashboards bundle (`superset/dashboards/`) is imported, with the databases' URIs from `.env`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from contextlib import closing
from pathlib import Path

import psycopg2
import requests

from instashop.devstack.service import Service
from instashop.ops.process import tail, wait_until

log = logging.getLogger(__name__)

APP = "superset.app:create_app()"
# Databases of the dashboards bundle whose URI (with its password) comes from .env at import.
DATABASE_URI_KEYS = {"InstaShop DWH": "DWH_READONLY_DSN"}
# What `make demo` lists: the slugs of the bundle's dashboards (superset/dashboard_defs.py).
DASHBOARD_SLUGS = ("sales", "customers", "products", "sessions", "live", "pipeline-health")
# The main venv's interpreter settings must not leak into Superset's.
_FOREIGN_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


class Superset(Service):
    name = "superset"
    port_key = "superset"
    # Each worker imports all of Superset; two of them at once on two cores take a while.
    health_timeout = 240.0

    @property
    def config_file(self) -> Path:
        return self.settings.repo_root / "superset" / "superset_config.py"

    @property
    def init_marker(self) -> Path:
        """Digest of what the metadata DB was last initialised with (see `_init_digest`)."""
        return self.data_dir / "initialised"

    @property
    def bundle_dir(self) -> Path:
        return self.settings.repo_root / "superset" / "dashboards"

    @property
    def bundle_marker(self) -> Path:
        """Digest of the dashboards bundle last imported (see `_bundle_digest`)."""
        return self.data_dir / "dashboards-imported"

    def command(self) -> list[str]:
        return [
            self._bin("gunicorn"),
            # Two cores: two processes (~0.3 GB each) with threads, as requests mostly wait on databases.
            "--workers", "2", "--worker-class", "gthread", "--threads", "4",
            # SQL Lab runs queries inside the request: SQLLAB_TIMEOUT < SUPERSET_WEBSERVER_TIMEOUT = this.
            "--timeout", "120", "--graceful-timeout", "20",
            # Superset sends whole chart forms in GET URLs (the flags its docs give for gunicorn).
            "--limit-request-line", "0", "--limit-request-field_size", "0",
            # gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by every instance.
            "--no-control-socket",
            # Already in environment(); repeated here so the command line names it (see marker()).
            "--env", f"SUPERSET_CONFIG_PATH={self.config_file}",
            "--bind", f"127.0.0.1:{self.port}",
            APP,
        ]  # fmt: skip

    def marker(self) -> str:
        # gunicorn's command line does not contain the data dir; the config path identifies this clone.
        return f"SUPERSET_CONFIG_PATH={self.config_file}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_PYTHON_VARS}
        env.update(
            SUPERSET_CONFIG_PATH=str(self.config_file),
            SUPERSET_HOME=str(self.data_dir),  # Superset's DATA_DIR, else ~/.superset
            FLASK_APP=APP,
            VIRTUAL_ENV=str(self.settings.superset_venv),
            PATH=f"{self.settings.superset_venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
        )
        return env

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._initialise_metadata_db()
        self._import_dashboards()

    def is_healthy(self) -> bool:
        try:
            response = requests.get(f"http://127.0.0.1:{self.port}/health", timeout=5)
        except requests.RequestException:
            return False
        return response.status_code == 200 and response.text.strip() == "OK"

    def port_taken(self) -> bool:
        # After a crash of the gunicorn master its workers hold the socket a little longer: they
        # notice their parent is gone within about a second and exit. Give them that time.
        def taken() -> bool:
            return super(Superset, self).port_taken()

        return taken() and not wait_until(lambda: not taken(), 15)

    def urls(self) -> list[str]:
        user, base = self.settings.superset_admin_user, self.settings.superset_url
        return [
            f"{base}  (login {user} / SUPERSET_ADMIN_PASSWORD in .env)",
            # One URL a line: the slug names the dashboard, and a terminal of 80 columns fits it.
            *(f"{base}/superset/dashboard/{slug}/" for slug in DASHBOARD_SLUGS),
            f"{base}/sqllab/  (SQL Lab, DWH read-only)",
        ]

    # --- internals -------------------------------------------------------------------------------

    def _initialise_metadata_db(self) -> None:
        digest = self._init_digest()
        if self._read_marker(self.init_marker) == digest and self._admin_exists():
            log.info("superset: metadata DB up to date, init skipped")
            return
        log.info("superset: initialising the metadata DB (db upgrade, admin, init); takes a few minutes")
        self.init_marker.unlink(missing_ok=True)
        self._superset("db", "upgrade")
        self._ensure_admin()
        self._superset("init")  # default roles and permissions
        self.init_marker.write_text(f"{digest}\n")

    def _import_dashboards(self) -> None:
        """Import the bundle (overwriting by UUID) unless this very bundle is already in place."""
        digest = self._bundle_digest()
        if self._read_marker(self.bundle_marker) == digest and self._bundle_dashboards_present():
            log.info("superset: dashboards bundle unchanged, import skipped")
            return
        log.info("superset: importing the dashboards bundle %s", self.bundle_dir)
        self.bundle_marker.unlink(missing_ok=True)
        uris = {name: self.settings.env_value(key) for name, key in DATABASE_URI_KEYS.items()}
        self._run(
            self._bin("python"), str(self.bundle_dir.parent / "import_dashboards.py"), str(self.bundle_dir),
            self.settings.superset_admin_user,
            secrets={"INSTASHOP_DATABASE_URIS": json.dumps(uris)},
        )  # fmt: skip
        self.bundle_marker.write_text(f"{digest}\n")

    def _bundle_digest(self) -> str:
        """Changes with any file of the bundle, the importer, Superset's version or a database URI."""
        digest = hashlib.sha256()
        superset_dir = self.bundle_dir.parent
        files = sorted(self.bundle_dir.rglob("*.yaml"))
        for path in [superset_dir / "import_dashboards.py", superset_dir / "requirements.txt", *files]:
            digest.update(f"\0{path.relative_to(superset_dir)}\0".encode())
            digest.update(path.read_bytes())
        for key in DATABASE_URI_KEYS.values():
            digest.update(f"\0{self.settings.env_value(key)}".encode())
        digest.update(self._init_digest().encode())  # a re-initialised metadata DB imports again
        return digest.hexdigest()

    def _bundle_uuids(self) -> list[str]:
        """UUIDs of the bundle's dashboards (a line `uuid: ...` at the top level of each file)."""
        uuids = []
        for path in sorted((self.bundle_dir / "dashboards").glob("*.yaml")):
            uuids += [
                line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("uuid:")
            ]
        return uuids

    def _bundle_dashboards_present(self) -> bool:
        """Catches dashboards deleted in the UI (or a metadata DB emptied) behind the marker's back."""
        uuids = self._bundle_uuids()
        rows = self._metadata_query("SELECT count(*) FROM dashboards WHERE uuid::text = ANY(%s)", (uuids,))
        return rows is not None and bool(rows) and rows[0][0] == len(uuids)

    def _bin(self, name: str) -> str:
        return str(self.settings.superset_venv / "bin" / name)

    def _init_digest(self) -> str:
        """Changes when a migration, a permission sync or the admin login may be due."""
        digest = hashlib.sha256()
        for path in (self.settings.repo_root / "superset" / "requirements.txt", self.config_file):
            digest.update(path.read_bytes())
        for key in ("SUPERSET_DB_DSN", "SUPERSET_ADMIN_USER", "SUPERSET_ADMIN_PASSWORD"):
            digest.update(f"\0{self.settings.env_value(key)}".encode())
        return digest.hexdigest()

    @staticmethod
    def _read_marker(marker: Path) -> str | None:
        try:
            return marker.read_text().strip()
        except FileNotFoundError:
            return None

    def _admin_exists(self) -> bool:
        """Catches a metadata DB dropped or emptied behind the marker's back."""
        rows = self._metadata_query("SELECT 1 FROM ab_user WHERE username = %s", (self.settings.superset_admin_user,))
        return bool(rows)

    def _metadata_query(self, sql: str, args: tuple) -> list[tuple] | None:
        """Rows of a query on the metadata DB; None if it cannot be read (not there, not migrated)."""
        dsn = self.settings.superset_db_dsn
        try:
            # closing(): a psycopg2 connection's own `with` ends the transaction, not the connection.
            with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        except psycopg2.Error:
            return None

    def _ensure_admin(self) -> None:
        """Create the admin user, or reset its password to the one in .env if it exists."""
        user = self.settings.superset_admin_user
        password = self.settings.superset_admin_password
        # The password goes through click's FLASK_<COMMAND>_<OPTION> variable, not argv (visible in ps).
        out = self._superset(
            "fab", "create-admin", "--username", user, "--firstname", "InstaShop", "--lastname", "Admin",
            "--email", f"{user}@instashop.local",
            secrets={"FLASK_FAB_CREATE_ADMIN_PASSWORD": password},
        )  # fmt: skip
        if "already exists" in out:
            out = self._superset(
                "fab", "reset-password", "--username", user,
                secrets={"FLASK_FAB_RESET_PASSWORD_PASSWORD": password},
            )  # fmt: skip
            if "reseted" not in out:  # sic, FAB's wording
                raise RuntimeError(f"superset: could not reset the password of {user}:\n{out}")
        elif "created" not in out:
            raise RuntimeError(f"superset: could not create the admin user {user}:\n{out}")

    def _superset(self, *args: str, secrets: dict[str, str] | None = None) -> str:
        """Run the superset CLI; its output goes to the service log and is returned."""
        return self._run(self._bin("superset"), *args, secrets=secrets)

    def _run(self, *argv: str, secrets: dict[str, str] | None = None) -> str:
        """Run a program of Superset's venv in its environment; output to the service log and returned."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        name = " ".join(Path(arg).name for arg in argv[:3])
        result = subprocess.run(
            list(argv),
            env={**self.environment(), **(secrets or {})},
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        output = result.stdout + result.stderr
        with self.log_file.open("a") as f:
            f.write(f"\n=== {name} (exit {result.returncode})\n{output}")
        if result.returncode != 0:
            raise RuntimeError(
                f"`{name}` failed (exit {result.returncode}). Last lines of {self.log_file}:\n{tail(self.log_file)}"
            )
        return output
