"""The throughput benchmark's peer works: Debezium's JDBC sink is installed on our Connect worker and,
with the benchmark's configuration, sinks change events captured from our connector (with schemas)
into PostgreSQL — the same rows, keys and exact amounts our own decoder reads from them."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg2 import sql

from benchmarks import jdbc_sink
from instashop import kafka_auth
from instashop.capture.connector import ConnectClient
from instashop.ingest.debezium import decode
from instashop.kafka_auth import ADMIN, client_config
from instashop.ops.kafka_lag import consumer_group_lag

pytestmark = pytest.mark.integration

JDBC_SINK = "io.debezium.connector.jdbc.JdbcSinkConnector"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "debezium" / "schema_precise_decimals.jsonl"
TEST_DB = "dwh_jdbcsink_test"
MONEY = {"transactions": "total_amount", "transaction_items": "amount", "cart_events": "amount", "products": "price"}


def captured() -> list[tuple[str, bytes | None, bytes | None]]:
    """(table, key, value) of the captured messages, in capture order (tombstones included)."""
    messages = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    return [(m["topic"].rsplit(".", 1)[1], _bytes(m["key"]), _bytes(m["value"])) for m in messages]


def expected_rows(messages: list[tuple[str, bytes | None, bytes | None]]) -> dict[str, tuple[str, dict]]:
    """Per table: (primary key column, key -> last row state), as our decoder sees them; deleted keys absent."""
    tables: dict[str, tuple[str, dict]] = {}
    for table, key, value in messages:
        change = decode(key, value)
        if change is None:  # tombstone
            continue
        ((column, pk),) = change.key.items()
        _, rows = tables.setdefault(table, (column, {}))
        if change.op == "d":
            rows.pop(pk, None)
        else:
            rows[pk] = change.after
    return tables


def test_connect_offers_the_jdbc_sink(settings):
    response = requests.get(f"{settings.connect_url}/connector-plugins", auth=settings.connect_auth, timeout=10)
    response.raise_for_status()
    plugins = {plugin["class"]: plugin for plugin in response.json()}
    assert plugins[JDBC_SINK]["type"] == "sink"


def test_the_jdbc_sink_writes_captured_change_events_to_postgres(settings):
    prefix = f"it-jdbc-{uuid.uuid4().hex[:6]}"
    pattern, name = rf"^{prefix}\.public\..+", f"{prefix}-sink"
    messages = captured()
    topics = sorted({f"{prefix}.public.{table}" for table, _, _ in messages})
    admin = AdminClient(client_config(settings, ADMIN))
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result(timeout=15)
    jdbc_sink.fresh_sink_database(settings, TEST_DB)
    # The sink runs as Connect's principal, which may read no topic but these, for this test.
    scratch = kafka_auth.scratch_grants(kafka_auth.CONNECT, prefix)
    kafka_auth.grant(admin, scratch)
    try:
        producer = Producer({**client_config(settings, ADMIN), "acks": "all"})
        for table, key, value in messages:
            producer.produce(f"{prefix}.public.{table}", key=key, value=value)
        assert producer.flush(15) == 0

        config = jdbc_sink.sink_config(pattern, tasks=1, database=TEST_DB)
        # Registered the way the benchmark registers it (a sink has no publication to wait for).
        assert ConnectClient(settings).register(name, config) == "created"
        _wait_for_commits(admin, jdbc_sink.group_of(name), pattern, settings, name)

        for table, (key_column, rows) in expected_rows(messages).items():
            written = _rows(settings, table, key_column)
            assert set(written) == set(rows), table
            if table in MONEY:  # exact: numeric columns read back as Decimal, never floats
                money = MONEY[table]
                assert {pk: written[pk][money] for pk in rows} == {pk: rows[pk][money] for pk in rows}, table
    finally:
        jdbc_sink.remove_sink(settings, admin, name)
        jdbc_sink.drop_sink_database(settings, TEST_DB)
        kafka_auth.revoke(admin, scratch)
        for future in admin.delete_topics(topics).values():
            future.result(timeout=15)


def _wait_for_commits(admin: AdminClient, group: str, pattern: str, settings, name: str) -> None:
    """Until the sink's group has committed every message (it commits only what it has written)."""
    deadline = time.monotonic() + 45
    while True:
        lag = consumer_group_lag(admin, group, pattern)
        if lag.total == 0 and lag.uncommitted_partitions == 0:
            return
        status = requests.get(
            f"{settings.connect_url}/connectors/{name}/status", auth=settings.connect_auth, timeout=10
        ).json()
        assert "FAILED" not in json.dumps(status), status
        assert time.monotonic() < deadline, f"sink still {lag.total} messages behind: {status}"
        time.sleep(0.5)


def _rows(settings, table: str, key_column: str) -> dict:
    """The sink's table as primary key -> row dict (its columns are named as in the source)."""
    conn = psycopg2.connect(settings.dwh_admin(TEST_DB))
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            columns = [c.name for c in cur.description]
            rows = [dict(zip(columns, values, strict=True)) for values in cur.fetchall()]
    finally:
        conn.close()
    return {row[key_column]: row for row in rows}


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()
