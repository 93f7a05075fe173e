"""The stack's PostgreSQL roles and Redis answer, and refuse what they must refuse."""

import uuid

import psycopg2
import pytest
import redis

pytestmark = pytest.mark.integration


def _query(dsn: str, statement: str, params=()):
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        result = cur.fetchall() if cur.description else None
    conn.close()
    return result


def test_shop_app_round_trips_on_the_oltp_database(settings):
    token = uuid.uuid4().hex
    with psycopg2.connect(settings.oltp_dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE smoke (token text)")
        cur.execute("INSERT INTO smoke VALUES (%s)", (token,))
        cur.execute("SELECT token, current_database(), current_user FROM smoke")
        assert cur.fetchone() == (token, "instashop", "instashop_app")
    conn.close()


def test_debezium_role_can_replicate_and_read_the_oltp_database(settings):
    dsn = _debezium_dsn(settings)
    assert _query(dsn, "SELECT rolreplication FROM pg_roles WHERE rolname = current_user") == [(True,)]
    assert _query(dsn, "SHOW wal_level") == [("logical",)]


def _debezium_dsn(settings, database: str = "instashop") -> str:
    return f"postgresql://debezium:{settings.debezium_password}@127.0.0.1:{settings.port('shop_postgres')}/{database}"


def test_debezium_role_may_open_logical_replication_on_the_shop_database(settings):
    conn = psycopg2.connect(_debezium_dsn(settings), replication="database", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("IDENTIFY_SYSTEM")
            assert cur.fetchone()[3] == "instashop"  # the database a logical slot would decode
    finally:
        conn.close()


def test_debezium_role_cannot_open_physical_replication(settings):
    """A physical replication connection would stream (pg_basebackup) every database of the cluster."""
    with pytest.raises(psycopg2.OperationalError, match=r"no pg_hba\.conf entry for replication connection"):
        psycopg2.connect(_debezium_dsn(settings), replication="true", connect_timeout=5)


def test_debezium_role_cannot_open_logical_replication_on_another_database(settings):
    with pytest.raises(psycopg2.OperationalError, match=r"pg_hba\.conf rejects connection"):
        psycopg2.connect(_debezium_dsn(settings, "postgres"), replication="database", connect_timeout=5)


def test_debezium_role_cannot_reach_the_dwh(settings):
    # The warehouse is another cluster, where no debezium role exists.
    dsn = f"postgresql://debezium:{settings.debezium_password}@127.0.0.1:{settings.port('dwh_postgres')}/dwh"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(dsn, connect_timeout=5)


def test_writer_writes_and_readonly_reads_the_dwh(settings):
    component = f"smoke-{uuid.uuid4().hex[:8]}"
    _query(
        settings.dwh_dsn,
        "INSERT INTO pipeline_heartbeats (component, details) VALUES (%s, %s)",
        (component, '{"smoke": true}'),
    )
    rows = _query(
        settings.dwh_readonly_dsn,
        "SELECT details FROM pipeline_heartbeats WHERE component = %s",
        (component,),
    )
    assert rows == [({"smoke": True},)]


def test_readonly_role_is_refused_a_write(settings):
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        _query(
            settings.dwh_readonly_dsn,
            "INSERT INTO pipeline_heartbeats (component) VALUES ('must-not-land')",
        )
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        _query(
            settings.dwh_readonly_dsn,
            "BEGIN READ WRITE; INSERT INTO pipeline_heartbeats (component) VALUES ('must-not-land')",
        )


def test_writer_cannot_create_tables_in_the_dwh(settings):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        _query(settings.dwh_dsn, "CREATE TABLE smoke_not_allowed (x int)")


def test_wrong_password_is_refused(settings):
    dsn = f"postgresql://dwh_writer:wrong@127.0.0.1:{settings.port('dwh_postgres')}/dwh"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(dsn, connect_timeout=5)


def test_redis_answers_with_auth_and_refuses_without(settings):
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    assert client.ping() is True
    key = f"smoke:{uuid.uuid4().hex}"
    client.set(key, "1", ex=60)
    assert client.get(key) == b"1"
    anonymous = redis.Redis(host="127.0.0.1", port=settings.port("redis"), socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()


# --- Redis: one ACL user per component ------------------------------------------------------------


def _redis_as(settings, url_key: str) -> redis.Redis:
    return redis.Redis.from_url(settings.env_value(url_key), socket_timeout=5, decode_responses=True)


def test_redis_live_writer_writes_live_keys_only(settings):
    writer = _redis_as(settings, "REDIS_LIVE_WRITER_URL")
    key = f"live:acl-test:{uuid.uuid4().hex}"
    writer.hset(key, mapping={"transactions": 1})
    writer.expire(key, 60)
    assert writer.hgetall(key) == {"transactions": "1"}
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.set(f"superset_data_{uuid.uuid4().hex}", "x")
    for command in (("FLUSHDB",), ("CONFIG", "GET", "requirepass"), ("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            writer.execute_command(*command)
    writer.delete(key)


def test_redis_live_reader_may_only_read_live_keys(settings):
    admin, reader = _redis_as(settings, "REDIS_URL"), _redis_as(settings, "REDIS_LIVE_READER_URL")
    key = f"live:acl-test:{uuid.uuid4().hex}"
    admin.set(key, "42", ex=60)
    assert reader.get(key) == "42"
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.set(key, "43")
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.delete(key)
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.get("superset_meta_anything")
    assert admin.get(key) == "42"
    admin.delete(key)


def test_redis_superset_cache_user_cannot_touch_live_metrics(settings):
    cache = _redis_as(settings, "REDIS_SUPERSET_URL")
    key = f"superset_data_acl_test_{uuid.uuid4().hex}"
    cache.set(key, "cached", ex=60)
    assert cache.get(key) == "cached"
    with pytest.raises(redis.exceptions.NoPermissionError):
        cache.get("live:heartbeat")
    cache.delete(key)
