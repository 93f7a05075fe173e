"""Poison messages on a CDC topic land in the DLQ (topic and table) with a reason; the rest flows on."""

import json
import time
import uuid

import psycopg2
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from instashop import generator, topics
from tests.integration.pipeline import Background, spec_answers_equal_truth, wait_until_caught_up

pytestmark = pytest.mark.integration

CDC_TOPIC = "instashop.public.transactions"


def _envelope(table: str, after: dict) -> bytes:
    source = {"table": table, "schema": "public", "lsn": 1, "ts_ms": 0, "snapshot": "false"}
    return json.dumps({"before": None, "after": after, "op": "c", "source": source}).encode()


def _key(name: str) -> bytes:
    """A well-formed Debezium key, so the value is what makes each message poison."""
    return json.dumps({"transaction_id": 1, "poison": name}).encode()


def _name(key: str | bytes | None) -> str:
    try:
        return json.loads(key or b"{}").get("poison", "")
    except ValueError:
        return ""


def _poison(tag: str) -> dict[str, tuple[bytes, str]]:
    """key -> (value, expected reason fragment)."""
    good_row = {
        "transaction_id": 1,
        "customer_id": 1,
        "session_id": None,
        "payment_method": "card",
        "status": "pending",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    return {
        f"{tag}-json": (b'{"op": "c", "after": {', "not valid JSON"),
        f"{tag}-table": (_envelope("unicorns", {"id": 1}), "unknown table 'unicorns'"),
        f"{tag}-types": (_envelope("transactions", {**good_row, "total_amount": 12.5}), "exact decimal"),
        f"{tag}-huge": (b'{"pad": "' + b"x" * 400_000 + b'"}', "exceeds the"),
    }


def test_poison_messages_go_to_the_dlq_and_valid_ones_are_written(settings, cdc_pipeline):
    tag = f"poison-{uuid.uuid4().hex[:8]}"
    poison = _poison(tag)
    config = generator.GeneratorConfig(rate=400, sessions=150, seed=21)
    writer = Background(generator.run, settings["OLTP_DSN"], config, console=None)
    writer.start()
    producer = Producer({"bootstrap.servers": settings["KAFKA_BOOTSTRAP"], "message.max.bytes": 2_000_000})
    for key, (value, _) in poison.items():
        producer.produce(CDC_TOPIC, key=_key(key), value=value)
        time.sleep(0.3)  # spread among the real changes
    assert producer.flush(10) == 0
    writer.finish(timeout=300)

    wait_until_caught_up(settings)
    for name, (dwh, truth) in spec_answers_equal_truth(settings).items():
        assert dwh == truth, f"spec query '{name}' differs from the OLTP truth"
    deadline = time.monotonic() + 60
    while len(table := _dead_letter_reasons(settings, tag)) < len(poison) and time.monotonic() < deadline:
        time.sleep(1)
    assert set(table) == set(poison)
    for key, (value, reason) in poison.items():
        assert reason in table[key][0], f"{key}: {table[key][0]}"
        assert table[key][1] == len(value)
    on_topic = _dlq_topic_reasons(settings, tag, expected=len(poison))
    assert set(on_topic) == set(poison)
    assert all(reason == table[key][0] for key, reason in on_topic.items())


def _dead_letter_reasons(settings, tag: str) -> dict[str, tuple[str, int]]:
    with psycopg2.connect(settings["DWH_READONLY_DSN"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT message_key, reason, value_bytes FROM dead_letters WHERE message_key LIKE %s", (f"%{tag}-%",)
        )
        rows = cur.fetchall()
    conn.close()
    return {_name(key): (reason, size) for key, reason, size in rows}


def _dlq_topic_reasons(settings, tag: str, expected: int) -> dict[str, str]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings["KAFKA_BOOTSTRAP"],
            "group.id": f"test-{tag}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # assign, not subscribe: no group rebalance to wait for.
    partitions = consumer.list_topics(topics.DEAD_LETTERS, timeout=10).topics[topics.DEAD_LETTERS].partitions
    consumer.assign([TopicPartition(topics.DEAD_LETTERS, p, OFFSET_BEGINNING) for p in partitions])
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                key = _name(message.key())
                if message.error() is None and key.startswith(tag):
                    found[key] = dict(message.headers())["dlq.reason"].decode()
    finally:
        consumer.close()
    return found
