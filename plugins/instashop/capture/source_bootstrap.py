"""Prepare an existing shop database for capture with least privilege (`instashop db bootstrap-source`).

A DBA who will not hand us a superuser needs to know exactly what the connector requires and who
must grant it: a replication role (LOGIN REPLICATION, nothing more), CONNECT/USAGE/SELECT on
exactly the captured tables, and a publication of those tables made by their owner (PostgreSQL
lets only a table's owner add it to a publication). `wal_level = logical` needs a restart, so we
check it and say how to fix it, never change it.

The work is split so that the decisions are unit-testable without a database:
`observe` (instashop.capture.source_catalog, with the target and what was seen) reads the
catalogs (as the tables' owner), `plan` turns that observation into ordered
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
from typing import Literal

from psycopg2 import sql
from psycopg2.extensions import connection, encrypt_password, parse_dsn

from instashop.capture import connector
from instashop.capture.source_catalog import (
    BootstrapError,
    Observed,
    Target,
    observe,
)

Runner = Literal["owner", "admin"]

# What the DBA sees where the password goes: the secret itself is never printed.
PASSWORD_SHOWN = "'<DEBEZIUM_PASSWORD>'"
_PASSWORD = sql.Placeholder("password")
# The role attributes the connector needs, and the ones it must not have.
ROLE_ATTRIBUTES = "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE"
# pgoutput sends only what the publication publishes; Debezium needs every row change.
NEEDED_ACTIONS = frozenset({"insert", "update", "delete"})
DOC = "docs/source-database.md"


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
