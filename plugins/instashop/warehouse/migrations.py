"""Versioned DDL: `sql/<target>/NNN_name.sql` applied in order, once each, by `instashop db migrate`.

Each file runs in its own transaction and is recorded with its checksum in `schema_migrations`;
an applied file that was edited afterwards is an error (add a new file instead). An advisory lock
keeps two concurrent `make up` runs from applying the same file twice.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal

import psycopg2

from instashop.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

SQL_DIR = REPO_ROOT / "sql"
_LOCK_ID = 0x1257_A50D  # any constant shared by every migrate run


@dataclass(frozen=True)
class Target:
    """A database, the cluster it lives on and the role that must own what its migrations create."""

    sql_dir: str
    database: str
    owner: str
    cluster: Literal["shop", "dwh"]

    def admin_dsn(self, settings: Settings) -> str:
        return settings.shop_admin(self.database) if self.cluster == "shop" else settings.dwh_admin(self.database)


TARGETS = (
    Target("oltp", "instashop", "instashop_app", "shop"),
    Target("dwh", "dwh", "postgres", "dwh"),
)


class MigrationError(RuntimeError):
    pass


def migrate(settings: Settings, targets: tuple[Target, ...] = TARGETS) -> list[str]:
    """Apply every pending migration; returns the files applied."""
    applied: list[str] = []
    for target in targets:
        applied += _migrate_target(settings, target)
    return applied


def _migrate_target(settings: Settings, target: Target) -> list[str]:
    files = sorted((SQL_DIR / target.sql_dir).glob("*.sql"))
    conn = psycopg2.connect(target.admin_dsn(settings))
    applied = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " filename text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT filename, checksum FROM schema_migrations")
            done = dict(cur.fetchall())
        for path in files:
            checksum = hashlib.sha256(path.read_bytes()).hexdigest()
            if path.name in done:
                if done[path.name] != checksum:
                    raise MigrationError(
                        f"{path} was changed after it was applied to {target.database}; "
                        "add a new migration file instead of editing an applied one"
                    )
                continue
            with conn, conn.cursor() as cur:
                cur.execute(f'SET LOCAL ROLE "{target.owner}"')
                cur.execute(path.read_text())
                cur.execute("RESET ROLE")
                cur.execute(
                    "INSERT INTO schema_migrations (filename, checksum) VALUES (%s, %s)",
                    (path.name, checksum),
                )
            log.info("%s: applied %s", target.database, path.name)
            applied.append(path.name)
    finally:
        conn.close()  # also releases the advisory lock
    return applied
