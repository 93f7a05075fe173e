"""`instashop db bootstrap-source` decides from what it observed: these are its decisions, no database.

The observation of a database prepared by hand as the connector needs is the starting point; each
test changes one thing and checks what the plan does about it.
"""

from dataclasses import replace

import pytest
from psycopg2 import sql

from instashop.capture import connector
from instashop.capture import source_bootstrap as bootstrap
from instashop.capture.source_bootstrap import Status
from instashop.capture.source_catalog import (
    BootstrapError,
    Observed,
    PublicationState,
    RoleState,
    TableState,
    target_from_connector,
)

TARGET = target_from_connector("shop", "debezium")
NAMES = TARGET.names
OWNER = "shop_owner"


def _text(part: sql.Composable) -> str:
    """A composed statement as the server would read it (psycopg2 needs a connection for that)."""
    if isinstance(part, sql.Composed):
        return "".join(_text(p) for p in part.seq)
    if isinstance(part, sql.SQL):
        return part.string
    if isinstance(part, sql.Identifier):
        return ".".join('"' + s.replace('"', '""') + '"' for s in part.strings)
    if isinstance(part, sql.Placeholder):
        return bootstrap.PASSWORD_SHOWN
    raise AssertionError(f"unexpected part {part!r}")


def _tables(owner: str = OWNER, can_select: bool = True) -> tuple[TableState, ...]:
    return tuple(TableState(name, owner, True, True, can_select) for name in NAMES)


def _in_place(**changes) -> Observed:
    observed = Observed(
        current_user=OWNER,
        wal_level="logical",
        max_replication_slots=10,
        max_wal_senders=10,
        role=RoleState(login=True, replication=True, superuser=False, createdb=False, createrole=False),
        tables=_tables(),
        can_create_in_database=True,
        can_grant_connect=True,
        can_grant_usage={"public": True},
        role_can_connect=True,
        role_has_usage={"public": True},
        publication=PublicationState(
            OWNER, True, False, frozenset(NAMES), True, frozenset({"insert", "update", "delete"})
        ),
    )
    return replace(observed, **changes)


def _by_key(steps) -> dict[str, bootstrap.Step]:
    return {step.key: step for step in steps}


def test_the_captured_tables_and_publication_are_the_connectors():
    config = connector.load_config()
    assert connector.captured_tables(config) == NAMES
    assert TARGET.publication == config["publication.name"] == "instashop_cdc"
    assert "public.transaction_items" in NAMES


def test_wal_level_not_logical_refuses_with_the_fix_and_changes_nothing():
    with pytest.raises(BootstrapError) as refused:
        bootstrap.plan(_in_place(wal_level="replica"), TARGET)
    message = str(refused.value)
    assert "wal_level = replica" in message
    assert "ALTER SYSTEM SET wal_level = logical" in message
    assert "max_replication_slots" in message and "max_wal_senders" in message
    assert "restart" in message


def test_no_replication_slots_refuses_too():
    with pytest.raises(BootstrapError, match="max_replication_slots = 0"):
        bootstrap.plan(_in_place(max_replication_slots=0), TARGET)


def test_everything_in_place_leaves_no_step_to_run():
    steps = bootstrap.plan(_in_place(), TARGET)
    assert [s.key for s in steps] == ["wal_level", "role", "connect", "usage:public", "select", "publication"]
    assert bootstrap.steps_to_run(steps) == []
    outcomes = bootstrap.classify(steps, role_exists=True, have_admin=False)
    assert {o.status for o in outcomes} == {Status.IN_PLACE}
    assert not bootstrap.needs_dba(outcomes)


def test_missing_role_without_admin_leaves_the_role_to_the_dba_and_plans_the_rest():
    observed = _in_place(
        role=None,
        tables=_tables(can_select=False),
        role_can_connect=False,
        role_has_usage={"public": False},
        publication=None,
    )
    steps = bootstrap.plan(observed, TARGET)
    role = _by_key(steps)["role"]
    assert (role.runner, role.in_place) == ("admin", False)
    assert _text(role.statement) == (
        'CREATE ROLE "debezium" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE '
        f"PASSWORD {bootstrap.PASSWORD_SHOWN}"
    )
    # everything else is the owner's to do, in this order
    assert [(s.key, s.runner) for s in bootstrap.steps_to_run(steps)] == [
        ("role", "admin"),
        ("connect", "owner"),
        ("usage:public", "owner"),
        ("select", "owner"),
        ("publication", "owner"),
    ]
    statements = {s.key: _text(s.statement) for s in steps if s.statement is not None}
    assert statements["connect"] == 'GRANT CONNECT ON DATABASE "shop" TO "debezium"'
    assert statements["usage:public"] == 'GRANT USAGE ON SCHEMA "public" TO "debezium"'
    assert (
        statements["select"]
        == "GRANT SELECT ON TABLE " + ", ".join(f'"public"."{name.split(".")[1]}"' for name in NAMES) + ' TO "debezium"'
    )
    assert statements["publication"].startswith('CREATE PUBLICATION "instashop_cdc" FOR TABLE "public"."customers", ')

    statuses = {o.step.key: o.status for o in bootstrap.classify(steps, role_exists=False, have_admin=False)}
    # the owner creates the publication now; the grants wait for the role the DBA creates
    assert statuses == {
        "wal_level": Status.IN_PLACE,
        "role": Status.NEEDS_DBA,
        "connect": Status.WAITING,
        "usage:public": Status.WAITING,
        "select": Status.WAITING,
        "publication": Status.WOULD_RUN,
    }
    with_admin = bootstrap.classify(steps, role_exists=False, have_admin=True)
    assert {o.status for o in with_admin if not o.step.in_place} == {Status.WOULD_RUN}
    assert not bootstrap.needs_dba(with_admin)


def test_a_role_with_too_much_or_too_little_is_altered_by_the_admin_without_touching_its_password():
    for role in (
        RoleState(login=True, replication=False, superuser=False, createdb=False, createrole=False),
        RoleState(login=True, replication=True, superuser=True, createdb=False, createrole=False),
        RoleState(login=True, replication=True, superuser=False, createdb=True, createrole=False),
    ):
        step = _by_key(bootstrap.plan(_in_place(role=role), TARGET))["role"]
        assert (step.runner, step.in_place) == ("admin", False)
        assert _text(step.statement) == f'ALTER ROLE "debezium" WITH {bootstrap.ROLE_ATTRIBUTES}'
        assert bootstrap.ROLE_ATTRIBUTES == "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE"


def test_publication_with_another_table_set_is_set_to_the_captured_tables():
    publication = _in_place().publication
    assert publication is not None
    for different in (
        replace(publication, tables=frozenset(NAMES[:-1])),  # one table short
        replace(publication, tables=frozenset({*NAMES, "public.audit_log"})),  # one too many
        replace(publication, exact=False),  # the same tables, but with a row filter or column list
    ):
        steps = bootstrap.plan(_in_place(publication=different), TARGET)
        assert [s.key for s in bootstrap.steps_to_run(steps)] == ["publication"]
        step = _by_key(steps)["publication"]
        assert step.runner == "owner"
        assert _text(step.statement) == 'ALTER PUBLICATION "instashop_cdc" SET TABLE ' + ", ".join(
            f'"public"."{name.split(".")[1]}"' for name in NAMES
        )


def test_publication_that_does_not_publish_updates_is_fixed():
    publication = replace(_in_place().publication, actions=frozenset({"insert"}))
    steps = bootstrap.steps_to_run(bootstrap.plan(_in_place(publication=publication), TARGET))
    assert [s.key for s in steps] == ["publish"]
    assert "SET (publish = 'insert, update, delete, truncate')" in _text(steps[0].statement)


def test_publication_of_all_tables_or_of_another_owner_is_refused():
    publication = _in_place().publication
    with pytest.raises(BootstrapError, match="FOR ALL TABLES"):
        bootstrap.plan(_in_place(publication=replace(publication, all_tables=True)), TARGET)
    other = replace(publication, owner="someone_else", acts_as_owner=False, tables=frozenset())
    with pytest.raises(BootstrapError, match="belongs to someone_else"):
        bootstrap.plan(_in_place(publication=other), TARGET)
    # another owner's publication that is already right is fine: nothing to change
    right = replace(publication, owner="someone_else", acts_as_owner=False)
    assert bootstrap.steps_to_run(bootstrap.plan(_in_place(publication=right), TARGET)) == []


def test_tables_of_different_owners_are_an_error_naming_them():
    tables = list(_tables())
    tables[1] = replace(tables[1], owner="alice")
    tables[2] = replace(tables[2], owner="bob")
    with pytest.raises(BootstrapError) as refused:
        bootstrap.plan(_in_place(tables=tuple(tables)), TARGET)
    message = str(refused.value)
    assert "more than one owner" in message
    assert f"alice: {NAMES[1]}" in message and f"bob: {NAMES[2]}" in message and OWNER in message


def test_a_missing_captured_table_is_an_error_naming_it():
    with pytest.raises(BootstrapError) as refused:
        bootstrap.plan(_in_place(tables=_tables()[:-1]), TARGET)
    assert NAMES[-1] in str(refused.value) and "table.include.list" in str(refused.value)


def test_the_owner_dsn_must_be_the_tables_owner():
    tables = tuple(replace(t, acts_as_owner=False) for t in _tables())
    with pytest.raises(BootstrapError, match=f"belong to {OWNER}"):
        bootstrap.plan(_in_place(current_user="intruder", tables=tables), TARGET)


def test_a_table_without_replica_identity_is_refused_rather_than_breaking_the_shops_updates():
    tables = list(_tables())
    tables[0] = replace(tables[0], has_replica_identity=False)
    with pytest.raises(BootstrapError, match=f"replica identity: {NAMES[0]}"):
        bootstrap.plan(_in_place(tables=tuple(tables)), TARGET)


def test_grants_the_owner_may_not_give_are_left_to_the_admin():
    observed = _in_place(can_grant_connect=False, role_can_connect=False)
    step = _by_key(bootstrap.plan(observed, TARGET))["connect"]
    assert step.runner == "admin"
    outcome = {o.step.key: o.status for o in bootstrap.classify(bootstrap.plan(observed, TARGET), True, False)}
    assert outcome["connect"] is Status.NEEDS_DBA


def test_only_the_tables_without_select_are_granted():
    tables = list(_tables())
    tables[3] = replace(tables[3], role_can_select=False)
    steps = bootstrap.steps_to_run(bootstrap.plan(_in_place(tables=tuple(tables)), TARGET))
    assert [(s.key, _text(s.statement)) for s in steps] == [
        ("select", f'GRANT SELECT ON TABLE "public"."{NAMES[3].split(".")[1]}" TO "debezium"')
    ]


@pytest.mark.parametrize(
    "dsn",
    [
        "host=127.0.0.1 password=top secret",  # unquoted space: libpq quotes the password's 2nd half back
        "postgresql://owner:top%20secret@127.0.0.1:5432/shop?nosuchoption=secret",
    ],
)
def test_a_dsn_that_does_not_parse_is_an_error_without_the_password(dsn):
    with pytest.raises(BootstrapError) as refused:
        bootstrap.connect(dsn, "--owner-dsn")
    assert str(refused.value).startswith("--owner-dsn is not a PostgreSQL DSN")
    assert "secret" not in str(refused.value)
