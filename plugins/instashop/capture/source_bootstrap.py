"""Prepare an existing shop database for capture with least privilege (`instashop db bootstrap-source`).

A DBA who will not hand us a superuser needs to know exactly what the connector requires and who
must grant it: a replication role (LOGIN REPLICATION, nothing more), CONNECT/USAGE/SELECT on
exactly the captured tables, and a publication of those tables made by their owner (PostgreSQL
lets only a table's owner add it to a publication). `wal_level = logical` needs a restart, so we
check it and say how to fix it, never change it.

The work is split so that the decisions are unit-testable without a database:
`observe` reads the catalogs (as the tables' owner), `plan` turns that observation into ordered
`Step`s (pure), `classify` says what happens to each step given the connections we have (pure),
and `execute` runs the steps that can run, then observes again to prove they took effect.
The captured tables and the publication's name come from the connector's own configuration
(instashop-oltp.json), the one source of truth for what Debezium reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from psycopg2 import sql
from psycopg2.extensions import connection, cursor, encrypt_password, parse_dsn

from instashop.capture import connector

Runner = Literal["owner", "admin"]

# What the DBA sees where the password goes: the secret itself is never printed.
PASSWORD_SHOWN = "'<DEBEZIUM_PASSWORD>'"
_PASSWORD = sql.Placeholder("password")
# The role attributes the connector needs, and the ones it must not have.
ROLE_ATTRIBUTES = "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE"
# pgoutput sends only what the publication publishes; Debezium needs every row change.
NEEDED_ACTIONS = frozenset({"insert", "update", "delete"})
DOC = "docs/source-database.md"


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


# --- planning (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str  # stable id: wal_level, role, connect, usage:<schema>, select, publication, publish
    what: str
    runner: Runner
    in_place: bool
    statement: sql.Composed | None = None  # None for a check we only observe
    needs_role: bool = False  # a grant to the replication role: the role must exist first


def plan(observed: Observed, target: Target) -> list[Step]:
    """The ordered steps that give the connector what it needs; raises BootstrapError when the
    database cannot be prepared as it is (wal_level, missing tables, several owners, ...)."""
    steps = [_wal_level_step(observed)]
    _check_tables(observed, target)
    steps.append(_role_step(observed, target))
    steps += _grant_steps(observed, target)
    steps += _publication_steps(observed, target)
    return steps


def steps_to_run(steps: Iterable[Step]) -> list[Step]:
    return [step for step in steps if not step.in_place]


def _wal_level_step(observed: Observed) -> Step:
    if observed.wal_level != "logical" or observed.max_replication_slots < 1 or observed.max_wal_senders < 1:
        raise BootstrapError(
            f"the server cannot decode logically (wal_level = {observed.wal_level}, max_replication_slots = "
            f"{observed.max_replication_slots}, max_wal_senders = {observed.max_wal_senders}); this command never "
            "changes server settings. As a superuser run:\n"
            "  ALTER SYSTEM SET wal_level = logical;\n"
            "  ALTER SYSTEM SET max_replication_slots = 10;\n"
            "  ALTER SYSTEM SET max_wal_senders = 10;\n"
            f"then restart PostgreSQL (managed services use a parameter instead: see {DOC})"
        )
    return Step("wal_level", "wal_level = logical, with replication slots and WAL senders", "admin", True)


def _check_tables(observed: Observed, target: Target) -> None:
    found = {table.name for table in observed.tables}
    missing = [name for name in target.names if name not in found]
    if missing:
        raise BootstrapError(
            f"captured tables missing in database {target.database}: {', '.join(missing)} "
            f"(table.include.list of {connector.CONFIG_FILE.name})"
        )
    owners: dict[str, list[str]] = {}
    for table in observed.tables:
        owners.setdefault(table.owner, []).append(table.name)
    if len(owners) > 1:
        listed = "; ".join(f"{owner}: {', '.join(names)}" for owner, names in sorted(owners.items()))
        raise BootstrapError(
            f"the captured tables have more than one owner ({listed}): only one role that owns them all "
            "can put them in a publication (ALTER TABLE ... OWNER TO one of them)"
        )
    (owner,) = owners
    if not all(table.acts_as_owner for table in observed.tables):
        raise BootstrapError(
            f"--owner-dsn logs in as {observed.current_user}, but the captured tables belong to {owner}: "
            f"connect as {owner} (or a member of it)"
        )
    if owner == target.role or observed.current_user == target.role:
        raise BootstrapError(f"the replication role {target.role} must not be the tables' owner")
    # A table without a replica identity in a publication that publishes updates makes the
    # shop's own UPDATEs and DELETEs on it fail: refuse rather than break the shop.
    no_identity = [table.name for table in observed.tables if not table.has_replica_identity]
    if no_identity:
        raise BootstrapError(
            f"captured tables without a primary key or replica identity: {', '.join(no_identity)}; once "
            "published, their UPDATEs and DELETEs would fail (add a primary key or ALTER TABLE ... REPLICA "
            "IDENTITY FULL)"
        )


def role_statement(role: str, exists: bool) -> sql.Composed:
    """CREATE ROLE (with the password as a placeholder) or ALTER ROLE to exactly the attributes needed."""
    if exists:
        # An existing role keeps its password: it may be what the connector already logs in with.
        return sql.SQL("ALTER ROLE {} WITH " + ROLE_ATTRIBUTES).format(sql.Identifier(role))
    return sql.SQL("CREATE ROLE {} WITH " + ROLE_ATTRIBUTES + " PASSWORD {}").format(sql.Identifier(role), _PASSWORD)


def _role_step(observed: Observed, target: Target) -> Step:
    # In PostgreSQL 15 only a superuser may create a REPLICATION role (on managed services the
    # provider's admin role, e.g. rds_superuser granting rds_replication): never the owner.
    return Step(
        "role",
        f"replication role {target.role}: LOGIN REPLICATION, no SUPERUSER, CREATEDB or CREATEROLE",
        "admin",
        observed.role is not None and observed.role.as_needed,
        role_statement(target.role, exists=observed.role is not None),
    )


def _grant_steps(observed: Observed, target: Target) -> list[Step]:
    role = sql.Identifier(target.role)
    steps = [
        Step(
            "connect",
            f"{target.role} may connect to database {target.database}",
            "owner" if observed.can_grant_connect else "admin",
            observed.role_can_connect,
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(target.database), role),
            needs_role=True,
        )
    ]
    for schema in target.schemas:
        steps.append(
            Step(
                f"usage:{schema}",
                f"{target.role} may look up tables in schema {schema}",
                "owner" if observed.can_grant_usage.get(schema) else "admin",
                observed.role_has_usage.get(schema, False),
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role),
                needs_role=True,
            )
        )
    # Debezium's initial snapshot reads the captured tables, and nothing else.
    unreadable = {table.name for table in observed.tables if not table.role_can_select}
    pending = [t for t in target.tables if f"{t[0]}.{t[1]}" in unreadable]
    steps.append(
        Step(
            "select",
            f"{target.role} may read the {len(target.tables)} captured tables (granted table by table)",
            "owner",
            not pending,
            sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(_table_list(pending or target.tables), role),
            needs_role=True,
        )
    )
    return steps


def _publication_steps(observed: Observed, target: Target) -> list[Step]:
    name = sql.Identifier(target.publication)
    tables = _table_list(target.tables)
    what = f"publication {target.publication} of exactly the captured tables, made by their owner"
    current = observed.publication
    if current is None:
        if not observed.can_create_in_database:
            raise BootstrapError(
                f"{observed.current_user} may not create publication {target.publication}: CREATE PUBLICATION "
                f"needs the CREATE privilege on the database. The DBA can run: GRANT CREATE ON DATABASE "
                f"{target.database} TO {observed.current_user};"
            )
        return [
            Step(
                "publication", what, "owner", False, sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, tables)
            )
        ]
    if current.all_tables:
        raise BootstrapError(
            f"publication {target.publication} exists FOR ALL TABLES (made by a superuser): it cannot be narrowed "
            f"to the captured tables; drop it (DROP PUBLICATION {target.publication}) and run this command again"
        )
    same = current.exact and current.tables == set(target.names)
    steps = [
        Step("publication", what, "owner", same, sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, tables))
    ]
    if not current.actions >= NEEDED_ACTIONS:
        steps.append(
            Step(
                "publish",
                f"publication {target.publication} publishes inserts, updates and deletes",
                "owner",
                False,
                sql.SQL("ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate')").format(name),
            )
        )
    if not current.acts_as_owner and steps_to_run(steps):
        raise BootstrapError(
            f"publication {target.publication} belongs to {current.owner}, not {observed.current_user}: only its "
            "owner may change it"
        )
    return steps


def _table_list(tables: Iterable[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in tables)


# --- what happens to each step (pure) ------------------------------------------------------------


class Status(StrEnum):
    DONE = "done"
    IN_PLACE = "already in place"
    WOULD_RUN = "would run"
    NEEDS_DBA = "needs the DBA"
    WAITING = "waits for the DBA"  # a grant to a role the DBA has yet to create


@dataclass(frozen=True)
class Outcome:
    step: Step
    status: Status


def classify(steps: Sequence[Step], role_exists: bool, have_admin: bool) -> list[Outcome]:
    """Each step's fate before anything runs: in place, to run (WOULD_RUN), or left to the DBA."""
    role_step = next((s for s in steps if s.key == "role"), None)
    role_ready = role_exists or (role_step is not None and have_admin)
    outcomes = []
    for step in steps:
        if step.in_place:
            status = Status.IN_PLACE
        elif step.runner == "admin" and not have_admin:
            status = Status.NEEDS_DBA
        elif step.needs_role and not role_ready:
            status = Status.WAITING
        else:
            status = Status.WOULD_RUN
        outcomes.append(Outcome(step, status))
    return outcomes


def needs_dba(outcomes: Iterable[Outcome]) -> bool:
    return any(o.status in (Status.NEEDS_DBA, Status.WAITING) for o in outcomes)


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


# --- connecting ---------------------------------------------------------------------------------


def connect(dsn: str, option: str) -> connection:
    """A connection for one of the command's DSN options; BootstrapError (never the password) if
    the DSN does not parse or the server cannot be reached or refuses the login."""
    import psycopg2

    try:
        parse_dsn(dsn)
    except psycopg2.ProgrammingError as err:
        raise BootstrapError(f"{option} is not a PostgreSQL DSN ({_without_password(str(err), dsn)})") from None
    try:
        return psycopg2.connect(dsn, connect_timeout=10, application_name="instashop bootstrap-source")
    except psycopg2.Error as err:
        raise BootstrapError(f"{option}: cannot connect ({_without_password(str(err), dsn)})") from None


def _without_password(message: str, dsn: str) -> str:
    """libpq's message on one line, with any quoted fragment of the DSN's password masked: a DSN
    that does not parse may be quoted back piece by piece."""
    found = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|.*)", dsn) or re.search(r"://[^:/@]*:([^@]*)@", dsn)
    password = found.group(1) if found else ""
    fragments = re.findall(r'"([^"]*)"', message)
    for fragment in fragments:
        if fragment and fragment in password:
            message = message.replace(f'"{fragment}"', '"***"')
    return " ".join(message.split())


# --- running the steps --------------------------------------------------------------------------


def render(statement: sql.Composed, conn: connection, password: sql.Composable | None = None) -> str:
    """The statement as text; the password is shown as a placeholder unless given."""
    return _with_password(statement, sql.SQL(PASSWORD_SHOWN) if password is None else password).as_string(conn)


def _with_password(statement: sql.Composable, password: sql.Composable) -> sql.Composable:
    if isinstance(statement, sql.Composed):
        return sql.Composed([_with_password(part, password) for part in statement.seq])
    return password if statement == _PASSWORD else statement


@dataclass
class Connections:
    owner: connection
    # Called only when the role is created, so a dry run or a second run needs no .env.
    password: Callable[[], str]
    admin: connection | None = None


def execute(conns: Connections, target: Target, dry_run: bool = False) -> list[Outcome]:
    """Observe, plan, run what can run (admin steps first: the grants need the role), then observe
    again and prove every step that ran is now in place. Idempotent: a step in place never runs."""
    observed = observe(conns.owner, target)
    conns.owner.rollback()  # observing must not leave a transaction open while the admin creates the role
    steps = plan(observed, target)
    outcomes = classify(steps, observed.role is not None, conns.admin is not None)
    if dry_run:
        return outcomes
    to_run = [o.step for o in outcomes if o.status is Status.WOULD_RUN]
    for runner in ("admin", "owner"):
        batch = [step for step in to_run if step.runner == runner]
        if batch:
            conn = conns.admin if runner == "admin" else conns.owner
            assert conn is not None  # classify leaves admin steps to the DBA without an admin connection
            _run_batch(conn, batch, target, conns.password)
    if to_run:
        _verify(conns.owner, target, to_run)
    return [Outcome(o.step, Status.DONE) if o.status is Status.WOULD_RUN else o for o in outcomes]


def _run_batch(conn: connection, batch: list[Step], target: Target, password: Callable[[], str]) -> None:
    """One transaction per connection: a failure leaves that connection's steps all undone."""
    import psycopg2

    current = batch[0]
    try:
        with conn, conn.cursor() as cur:
            for current in batch:
                assert current.statement is not None  # only checks have none, and they are always in place
                statement: sql.Composable = current.statement
                if current.key == "role":
                    # Sent as a verifier computed here (SCRAM, as the server's password_encryption
                    # says): the plain password never reaches the server or its statement log.
                    verifier = encrypt_password(password(), target.role, conn)
                    statement = _with_password(statement, sql.Literal(verifier))
                cur.execute(statement)
    except psycopg2.Error as err:
        # Only the server's message and hint: the statement (and its password) is never echoed.
        hint = f" ({err.diag.message_hint})" if err.diag.message_hint else ""
        raise BootstrapError(f"{current.what}: {err.diag.message_primary or str(err).strip()}{hint}") from None


def _verify(owner: connection, target: Target, ran: list[Step]) -> None:
    # A GRANT without the right to grant is only a WARNING in PostgreSQL: prove the effect instead.
    after = {step.key: step for step in plan(observe(owner, target), target)}
    owner.rollback()
    missing = [step.what for step in ran if step.key in after and not after[step.key].in_place]
    if missing:
        raise BootstrapError(
            "these ran but are not in place: "
            + "; ".join(missing)
            + " (the --admin-dsn and --owner-dsn must reach the same server and database)"
        )
