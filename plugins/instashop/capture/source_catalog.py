"""What bootstrap-source wants of a shop database and what its catalogs say (`observe`).

The target comes from the connector's own configuration (instashop-oltp.json); the observation is
read as the tables' owner. instashop.capture.source_bootstrap plans and runs the steps from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import connection, cursor

from instashop.capture import connector


class BootstrapError(RuntimeError):
    """The database cannot be prepared as it is; the message names what is wrong and the fix."""


# --- what we want and what we saw ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the connector needs: its role, its publication and the tables it captures."""

    database: str
    role: str
    publication: str
    tables: tuple[tuple[str, str], ...]  # (schema, table), in table.include.list order

    @property
    def names(self) -> list[str]:
        return [f"{schema}.{table}" for schema, table in self.tables]

    @property
    def schemas(self) -> list[str]:
        return list(dict.fromkeys(schema for schema, _ in self.tables))


def target_from_connector(database: str, role: str, config: dict[str, Any] | None = None) -> Target:
    """The target of the connector's configuration (instashop-oltp.json) on one database."""
    config = config if config is not None else connector.load_config()
    tables = []
    for name in connector.captured_tables(config):
        schema, dot, table = name.partition(".")
        if not dot:
            raise BootstrapError(f"table.include.list entry {name!r} is not schema.table")
        tables.append((schema, table))
    if not tables:
        raise BootstrapError(f"table.include.list of {connector.CONFIG_FILE.name} names no table")
    return Target(database, role, config["publication.name"], tuple(tables))


@dataclass(frozen=True)
class RoleState:
    login: bool
    replication: bool
    superuser: bool
    createdb: bool
    createrole: bool

    @property
    def as_needed(self) -> bool:
        return self.login and self.replication and not (self.superuser or self.createdb or self.createrole)


@dataclass(frozen=True)
class TableState:
    name: str  # schema.table
    owner: str
    acts_as_owner: bool  # the owner connection's user has the owner's privileges
    has_replica_identity: bool  # a primary key, or REPLICA IDENTITY FULL / USING INDEX
    role_can_select: bool


@dataclass(frozen=True)
class PublicationState:
    owner: str
    acts_as_owner: bool
    all_tables: bool
    tables: frozenset[str]
    # Row filters, column lists or whole schemas: a publication of the same tables that still
    # does not send Debezium every row and column.
    exact: bool
    actions: frozenset[str]


@dataclass(frozen=True)
class Observed:
    """The database as the tables' owner sees it."""

    current_user: str
    wal_level: str
    max_replication_slots: int
    max_wal_senders: int
    role: RoleState | None
    tables: tuple[TableState, ...]  # the captured tables that exist
    can_create_in_database: bool  # CREATE PUBLICATION needs CREATE on the database
    can_grant_connect: bool  # only the database's owner (or a grantee WITH GRANT OPTION) may
    can_grant_usage: dict[str, bool]  # schema -> the owner may grant USAGE on it
    role_can_connect: bool  # CONNECT that lasts: granted to the role, not only to PUBLIC
    role_has_usage: dict[str, bool]  # schema -> USAGE that lasts, as role_can_connect
    publication: PublicationState | None


# --- reading the database -----------------------------------------------------------------------


def observe(conn: connection, target: Target) -> Observed:
    """The catalogs as the owner connection sees them (read only)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_user, current_setting('wal_level'), current_setting('max_replication_slots')::int,"
            " current_setting('max_wal_senders')::int, has_database_privilege(current_database(), 'CREATE'),"
            " has_database_privilege(current_database(), 'CONNECT WITH GRANT OPTION')"
        )
        user, wal_level, slots, senders, can_create, can_grant_connect = _one(cur)
        cur.execute(
            # On RDS/Aurora replication is membership of rds_replication, not the attribute.
            "SELECT rolcanlogin, rolreplication OR EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g"
            " ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname = 'rds_replication'),"
            " rolsuper, rolcreatedb, rolcreaterole FROM pg_roles r WHERE rolname = %s",
            (target.role,),
        )
        row = cur.fetchone()
        role = RoleState(*row) if row else None
        return Observed(
            current_user=user,
            wal_level=wal_level,
            max_replication_slots=slots,
            max_wal_senders=senders,
            role=role,
            tables=_observe_tables(cur, target, role is not None),
            can_create_in_database=can_create,
            can_grant_connect=can_grant_connect,
            can_grant_usage={s: _schema_privilege(cur, None, s, "USAGE WITH GRANT OPTION") for s in target.schemas},
            role_can_connect=role is not None and _role_holds(cur, target.role, "database", target.database),
            role_has_usage={s: role is not None and _role_holds(cur, target.role, "schema", s) for s in target.schemas},
            publication=_observe_publication(cur, target.publication),
        )


def _one(cur: cursor) -> tuple:
    row = cur.fetchone()
    assert row is not None  # a SELECT without FROM always returns its row
    return tuple(row)


def _observe_tables(cur: cursor, target: Target, role_exists: bool) -> tuple[TableState, ...]:
    schemas, names = [s for s, _ in target.tables], [t for _, t in target.tables]
    cur.execute(
        """
        SELECT n.nspname || '.' || c.relname,
               pg_get_userbyid(c.relowner),
               pg_has_role(current_user, c.relowner, 'USAGE'),
               c.relreplident = 'f'
               OR (c.relreplident = 'd' AND EXISTS (SELECT FROM pg_index WHERE indrelid = c.oid AND indisprimary))
               OR (c.relreplident = 'i' AND EXISTS (SELECT FROM pg_index WHERE indrelid = c.oid AND indisreplident)),
               -- CASE, not AND: has_table_privilege raises for a role that does not exist
               CASE WHEN %(role_exists)s THEN has_table_privilege(%(role)s, c.oid, 'SELECT') ELSE false END
        FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS wanted(nspname, relname, position)
        JOIN pg_namespace n ON n.nspname = wanted.nspname
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.relname AND c.relkind IN ('r', 'p')
        ORDER BY wanted.position
        """,
        {"role_exists": role_exists, "role": target.role, "schemas": schemas, "names": names},
    )
    return tuple(TableState(*row) for row in cur.fetchall())


def _schema_privilege(cur: cursor, role: str | None, schema: str, privilege: str) -> bool:
    # A schema that does not exist has no privileges (the missing tables are reported by plan).
    cur.execute(
        "SELECT COALESCE((SELECT has_schema_privilege(COALESCE(%s, current_user), oid, %s)"
        " FROM pg_namespace WHERE nspname = %s), false)",
        (role, privilege, schema),
    )
    return bool(_one(cur)[0])


# CONNECT on the database, USAGE on a schema: (catalog, name column, ACL column, owner column,
# acldefault kind, has_*_privilege function, privilege).
_OBJECT_ACL = {
    "database": ("pg_database", "datname", "datacl", "datdba", "d", "has_database_privilege", "CONNECT"),
    "schema": ("pg_namespace", "nspname", "nspacl", "nspowner", "n", "has_schema_privilege", "USAGE"),
}


def _role_holds(cur: cursor, role: str, kind: str, name: str) -> bool:
    """Whether the role holds CONNECT (database) or USAGE (schema) in a way that lasts: a privilege
    it has only through PUBLIC (PostgreSQL's default) goes with the first REVOKE ... FROM PUBLIC,
    so then only a grant to the role itself counts."""
    catalog, name_col, acl_col, owner_col, acl_kind, has_privilege, privilege = _OBJECT_ACL[kind]
    cur.execute(
        sql.SQL(
            """
            WITH obj AS (SELECT oid, coalesce({acl}, acldefault({kind}, {owner})) AS acl FROM {catalog}
                         WHERE {name_col} = %(name)s),
                 grants AS (SELECT (aclexplode(acl)).* FROM obj),
                 grantee AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
            SELECT coalesce((SELECT {has_privilege}(%(role)s, obj.oid, %(privilege)s) FROM obj), false)
               AND (EXISTS (SELECT FROM grants WHERE privilege_type = %(privilege)s
                            AND grants.grantee = (SELECT oid FROM grantee))
                    OR NOT EXISTS (SELECT FROM grants WHERE privilege_type = %(privilege)s AND grants.grantee = 0))
            """
        ).format(
            acl=sql.Identifier(acl_col),
            kind=sql.Literal(acl_kind),
            owner=sql.Identifier(owner_col),
            catalog=sql.Identifier(catalog),
            name_col=sql.Identifier(name_col),
            has_privilege=sql.Identifier(has_privilege),
        ),
        {"name": name, "role": role, "privilege": privilege},
    )
    return bool(_one(cur)[0])


def _observe_publication(cur: cursor, name: str) -> PublicationState | None:
    cur.execute(
        """
        SELECT pg_get_userbyid(p.pubowner), pg_has_role(current_user, p.pubowner, 'USAGE'), p.puballtables,
               p.pubinsert, p.pubupdate, p.pubdelete,
               NOT EXISTS (SELECT 1 FROM pg_publication_rel r
                           WHERE r.prpubid = p.oid AND (r.prqual IS NOT NULL OR r.prattrs IS NOT NULL))
               AND NOT EXISTS (SELECT 1 FROM pg_publication_namespace s WHERE s.pnpubid = p.oid),
               ARRAY(SELECT t.schemaname || '.' || t.tablename FROM pg_publication_tables t WHERE t.pubname = p.pubname)
        FROM pg_publication p WHERE p.pubname = %s
        """,
        (name,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    owner, acts_as_owner, all_tables, insert, update, delete, exact, tables = row
    actions = frozenset(a for a, on in (("insert", insert), ("update", update), ("delete", delete)) if on)
    return PublicationState(owner, acts_as_owner, all_tables, frozenset(tables), exact, actions)
