"""`instashop db bootstrap-source` on a real shop database whose tables belong to a non-superuser.

A scratch database on the shop cluster plays the DBA's database: its owner role (no superuser) owns
the real shop tables (sql/oltp/002_shop.sql, applied as that role) and one table the connector does
not capture. The real command runs against it, and the tests check what Debezium relies on: the role
it made replicates the owner's changes through the publication, reads the captured tables and nothing
else, and has no power beyond that; a second run changes nothing; the DBA's statement never carries
the password. The replication role has a test name: the cluster's HBA lets `debezium` into the
`instashop` database only.
"""

import os
import secrets
import select
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass

import psycopg2
import pytest
from psycopg2 import errors, sql
from psycopg2.extensions import make_dsn
from psycopg2.extras import LogicalReplicationConnection

from instashop.capture import connector

pytestmark = pytest.mark.integration

PUBLICATION = connector.load_config()["publication.name"]
CAPTURED = [name.split(".", 1)[1] for name in connector.captured_tables(connector.load_config())]


@dataclass
class Source:
    database: str
    owner: str
    role: str
    slot: str
    owner_dsn: str
    admin_dsn: str
    role_dsn: str
    secrets: tuple[str, ...]  # the owner's and the replication role's passwords
    runs: dict[str, subprocess.CompletedProcess]
    state: dict[str, tuple]  # catalog snapshots taken between the runs


def _run(settings, source: Source, *extra: str, owner_dsn: str | None = None) -> subprocess.CompletedProcess:
    command = [str(settings.repo_root / ".venv/bin/instashop"), "db", "bootstrap-source"]
    command += ["--owner-dsn", owner_dsn or source.owner_dsn, "--replication-role", source.role, *extra]
    # The role gets this run's own password, not the stack's DEBEZIUM_PASSWORD (the environment wins).
    env = {**os.environ, "DEBEZIUM_PASSWORD": source.secrets[1], "COLUMNS": "250"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=settings.repo_root)


def _snapshot(source: Source) -> tuple:
    """What the command may change: the role, the grants, the publication."""
    with closing(psycopg2.connect(source.admin_dsn)) as conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT (SELECT row(rolsuper, rolreplication, rolcanlogin, rolcreatedb, rolcreaterole,
                               md5(rolpassword))::text
                    FROM pg_authid WHERE rolname = %(role)s),
                   (SELECT datacl::text FROM pg_database WHERE datname = current_database()),
                   (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'),
                   ARRAY(SELECT relname || ':' || coalesce(relacl::text, '') FROM pg_class
                         WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname),
                   (SELECT row(pubowner::regrole, pubinsert, pubupdate, pubdelete)::text FROM pg_publication
                    WHERE pubname = %(publication)s),
                   ARRAY(SELECT tablename FROM pg_publication_tables WHERE pubname = %(publication)s ORDER BY 1)
            """,
            {"role": source.role, "publication": PUBLICATION},
        )
        return cur.fetchone()


def _create_shop_database(settings, source: Source, owner_password: str) -> None:
    with closing(psycopg2.connect(settings.shop_admin("postgres"))) as conn:
        conn.autocommit = True  # CREATE DATABASE
        with conn.cursor() as cur:
            owner, database = sql.Identifier(source.owner), sql.Identifier(source.database)
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(owner, sql.Literal(owner_password)))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, owner))
            # as sql/oltp/001_access.sql does: nobody connects unless granted
            cur.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
    shop_schema = (settings.repo_root / "sql/oltp/002_shop.sql").read_text()
    with closing(psycopg2.connect(source.admin_dsn)) as conn, conn, conn.cursor() as cur:
        # The tables belong to the owner, as in a database we did not make; the migration's own
        # publication is dropped: the command is to make it.
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(source.owner)))
        cur.execute(shop_schema)
        cur.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(PUBLICATION)))
        cur.execute("CREATE TABLE not_captured (id integer PRIMARY KEY, note text)")
        cur.execute("INSERT INTO not_captured VALUES (1, 'not for Debezium')")


def _drop_all(settings, source: Source) -> None:
    with closing(psycopg2.connect(settings.shop_admin("postgres"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            # A logical slot keeps its database from being dropped (and the cluster's WAL from going).
            cur.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active",
                (source.database,),
            )
            deadline = time.monotonic() + 30
            while True:
                cur.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE database = %s AND NOT active", (source.database,)
                )
                for (slot,) in cur.fetchall():
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                cur.execute("SELECT count(*) FROM pg_replication_slots WHERE database = %s", (source.database,))
                if cur.fetchone()[0] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(source.database)))
            for role in (source.role, source.owner):
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def source(settings):
    """The scratch shop database, and the command's runs on it in order: a dry run; a run without
    --admin-dsn (the role is missing); a run with it; a second run with it."""
    suffix = secrets.token_hex(4)
    owner_password, role_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    database, owner, role = (
        f"bootstrap_probe_{suffix}",
        f"bootstrap_probe_owner_{suffix}",
        f"bootstrap_probe_repl_{suffix}",
    )
    admin_dsn = settings.shop_admin(database)
    source = Source(
        database=database,
        owner=owner,
        role=role,
        slot=f"bootstrap_probe_{suffix}",
        owner_dsn=make_dsn(admin_dsn, user=owner, password=owner_password),
        admin_dsn=admin_dsn,
        role_dsn=make_dsn(admin_dsn, user=role, password=role_password),
        secrets=(owner_password, role_password),
        runs={},
        state={},
    )
    try:
        _create_shop_database(settings, source, owner_password)
        source.state["before"] = _snapshot(source)
        source.runs["dry"] = _run(settings, source, "--admin-dsn", admin_dsn, "--dry-run")
        source.state["after dry run"] = _snapshot(source)
        source.runs["no admin"] = _run(settings, source)
        source.state["after no admin"] = _snapshot(source)
        source.runs["admin"] = _run(settings, source, "--admin-dsn", admin_dsn)
        source.state["after admin"] = _snapshot(source)
        source.runs["again"] = _run(settings, source, "--admin-dsn", admin_dsn)
        source.state["after again"] = _snapshot(source)
        yield source
    finally:
        _drop_all(settings, source)


def _output(run: subprocess.CompletedProcess) -> str:
    return run.stdout + run.stderr


def _status_lines(run: subprocess.CompletedProcess) -> list[str]:
    starts = ("done", "already in place", "would run", "needs the DBA", "waits for the DBA")
    return [line for line in run.stdout.splitlines() if line.startswith(starts)]


def test_a_dry_run_prints_the_plan_and_changes_nothing(source):
    run = source.runs["dry"]
    assert run.returncode == 0, _output(run)
    assert source.state["after dry run"] == source.state["before"]
    assert f'CREATE ROLE "{source.role}" WITH LOGIN REPLICATION' in run.stdout
    assert f'CREATE PUBLICATION "{PUBLICATION}" FOR TABLE "public"."customers"' in run.stdout
    assert "dry run: nothing changed" in run.stdout


def test_without_admin_the_owner_does_its_part_and_the_dba_gets_the_one_statement(source):
    run = source.runs["no admin"]
    assert run.returncode == 2, _output(run)
    statement = (
        f'CREATE ROLE "{source.role}" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE '
        "PASSWORD '<DEBEZIUM_PASSWORD>';"
    )
    dba_part = run.stdout.split("The DBA must run", 1)[1]
    assert statement in dba_part
    assert "needs the DBA" in run.stdout and "Traceback" not in _output(run)
    # the owner made the publication; the role (and so its grants) waits for the DBA
    lines = _status_lines(run)
    assert any(line.startswith("done") and "publication" in line for line in lines), lines
    assert any(line.startswith("waits for the DBA") for line in lines), lines
    state = source.state["after no admin"]
    assert state[0] is None, "the role was created without an admin"
    assert list(state[5]) == sorted(CAPTURED)


def test_no_run_prints_a_password(source):
    for name, run in source.runs.items():
        for secret in source.secrets:
            assert secret not in _output(run), f"the {name} run printed a password"


def test_with_admin_every_step_is_done_or_was_in_place(source):
    run = source.runs["admin"]
    assert run.returncode == 0, _output(run)
    statuses = {line.split("  ")[0] for line in _status_lines(run)}
    assert statuses <= {"done", "already in place"}, run.stdout
    assert any(line.startswith("done") and "replication role" in line for line in _status_lines(run))


def test_a_second_run_changes_nothing_and_says_so(source):
    run = source.runs["again"]
    assert run.returncode == 0, _output(run)
    lines = _status_lines(run)
    assert lines and all(line.startswith("already in place") for line in lines), run.stdout
    assert "nothing changed" in run.stdout
    assert source.state["after again"] == source.state["after admin"]


def _read_change(cur, marker: bytes, timeout: float = 60) -> list[bytes]:
    """pgoutput messages until an insert carrying marker; the names of the relations they described."""
    relations: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = cur.read_message()
        if message is None:
            select.select([cur], [], [], 1)
            continue
        payload = bytes(message.payload)
        if payload[:1] == b"R":  # Relation: id, namespace\0, name\0, ...
            relations.append(payload[5:].split(b"\0")[1])
        elif payload[:1] == b"I" and marker in payload:
            return relations
    raise AssertionError(f"no insert carrying {marker!r} within {timeout} s (relations seen: {relations})")


def test_the_role_replicates_the_owners_changes_through_the_publication(source):
    with closing(psycopg2.connect(source.role_dsn, connection_factory=LogicalReplicationConnection)) as repl:
        cur = repl.cursor()
        cur.create_replication_slot(source.slot, output_plugin="pgoutput")
        try:
            cur.start_replication(
                slot_name=source.slot, decode=False, options={"proto_version": "1", "publication_names": PUBLICATION}
            )
            marker = f"probe-{source.slot}@example.com"
            with closing(psycopg2.connect(source.owner_dsn)) as shop, shop, shop.cursor() as write:
                write.execute("INSERT INTO not_captured VALUES (2, 'never published')")
                write.execute("INSERT INTO customers (name, email, country) VALUES ('Probe', %s, 'ES')", (marker,))
            relations = _read_change(cur, marker.encode())
        finally:
            repl.close()
            _drop_slot(source)
    assert b"customers" in relations
    assert b"not_captured" not in relations


def _drop_slot(source: Source) -> None:
    with closing(psycopg2.connect(source.admin_dsn)) as conn, conn, conn.cursor() as cur:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the walsender ends a moment after its connection closes
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s AND NOT active",
                (source.slot,),
            )
            if cur.rowcount:
                return
            time.sleep(0.2)


def test_the_role_reads_the_captured_tables_and_nothing_else(source):
    with closing(psycopg2.connect(source.role_dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for table in CAPTURED:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute("SELECT * FROM not_captured")
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute("INSERT INTO customers (name, email, country) VALUES ('x', 'x@example.com', 'ES')")


def test_the_role_is_no_superuser_and_cannot_create_databases_or_roles(source):
    with closing(psycopg2.connect(source.role_dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolcanlogin FROM pg_roles"
                " WHERE rolname = current_user"
            )
            assert cur.fetchone() == (False, False, False, True, True)
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(f"{source.database}_not")))
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{source.role}_not")))


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("this is not a dsn", "--owner-dsn is not a PostgreSQL DSN"),
        ("postgresql://nobody:some-password@127.0.0.1:1/instashop", "--owner-dsn: cannot connect"),
    ],
)
def test_bad_input_is_a_clear_error(settings, dsn, says):
    run = subprocess.run(
        [str(settings.repo_root / ".venv/bin/instashop"), "db", "bootstrap-source", "--owner-dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert run.returncode == 1, _output(run)
    assert says in _output(run)
    assert "Traceback" not in _output(run) and "some-password" not in _output(run)


def test_a_publication_missing_a_table_is_set_back_to_the_captured_tables(settings, source):
    # Last on purpose: it changes the module's database (and leaves it as the command makes it).
    with closing(psycopg2.connect(source.owner_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE transaction_items").format(sql.Identifier(PUBLICATION)))
    run = _run(settings, source, "--admin-dsn", source.admin_dsn)
    assert run.returncode == 0, _output(run)
    done = [line for line in _status_lines(run) if line.startswith("done")]
    assert len(done) == 1 and "publication" in done[0], run.stdout
    assert f'ALTER PUBLICATION "{PUBLICATION}" SET TABLE "public"."customers"' in run.stdout
    assert _snapshot(source) == source.state["after again"]
