"""Poison messages on a CDC topic land in the DLQ (topic and table) with a reason; the rest flows on."""

import hashlib
import json
import time
import uuid

import psycopg2
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from instashop.capture import topics
from instashop.devstack import generator
from instashop.kafka_auth import ADMIN, client_config
from tests.support.pipeline import Background, spec_answers_equal_truth, wait_until_caught_up

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
    writer = Background(generator.run, settings.oltp_dsn, config, console=None)
    writer.start()
    producer = Producer({**client_config(settings, ADMIN), "message.max.bytes": 2_000_000})
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


def test_oversized_messages_become_one_dead_letter_each_and_the_rest_flows(settings, cdc_pipeline):
    """Any size the broker accepts ends as one dead letter: above the DLQ producer's own limit, the
    letter carries an excerpt and a digest of the value instead of the value (the DLQ cannot hold it)."""
    tag = f"big-{uuid.uuid4().hex[:8]}"
    writer = Background(
        generator.run, settings.oltp_dsn, generator.GeneratorConfig(rate=300, sessions=100, seed=22), console=None
    )
    writer.start()
    sent = {
        f"{tag}-1mb": _produce(settings, _key(f"{tag}-1mb"), b"x" * 1_000_000),
        f"{tag}-broker-max": _produce_broker_maximum(settings, _key(f"{tag}-broker-max")),
        # 8 MiB of JSON that lz4 makes a few KiB: the broker checks the compressed batch only.
        f"{tag}-compressed": _produce(settings, _key(f"{tag}-compressed"), _json_padding(8 << 20), "lz4"),
    }
    writer.finish(timeout=120)

    wait_until_caught_up(settings)  # the changes after the oversized messages were written too
    assert cdc_pipeline.pid() is not None, "the consumer died"
    for name, (dwh, truth) in spec_answers_equal_truth(settings).items():
        assert dwh == truth, f"spec query '{name}' differs from the OLTP truth"
    deadline = time.monotonic() + 60
    while len(table := _dead_letter_digests(settings, tag)) < len(sent) and time.monotonic() < deadline:
        time.sleep(1)
    assert set(table) == set(sent)
    for name, value in sent.items():
        assert table[name] == (len(value), hashlib.sha256(value).hexdigest()), name
    on_topic = _dlq_topic_headers(settings, tag, expected=len(sent))
    assert set(on_topic) == set(sent)
    for name, value in sent.items():
        headers = on_topic[name]
        assert headers["dlq.value.sha256"] == hashlib.sha256(value).hexdigest()
        assert int(headers["dlq.value.bytes"]) == len(value)
        assert headers["dlq.value.truncated"] == "true"


def _produce(settings, key: bytes, value: bytes, compression: str = "none") -> bytes:
    """Produce one message to the transactions CDC topic; returns the value once the broker took it."""
    producer = Producer(
        {
            **client_config(settings, ADMIN),
            "message.max.bytes": 16 << 20,  # the client's own check; the broker's is what counts
            "compression.type": compression,
        }
    )
    errors: list = []
    producer.produce(CDC_TOPIC, key=key, value=value, on_delivery=lambda err, _: errors.append(err))
    assert producer.flush(30) == 0
    assert len(errors) == 1 and errors[0] is None, f"the broker refused the message: {errors}"
    return value


def _produce_broker_maximum(settings, key: bytes) -> bytes:
    """The largest uncompressed value the broker accepts on the CDC topic (its limit is on the batch)."""
    producer = Producer({**client_config(settings, ADMIN), "message.max.bytes": 16 << 20, "linger.ms": 0})
    errors: list = []
    size = 1_048_588  # the broker's default message.max.bytes: the batch, headers and key included
    while size > 1_040_000:
        errors.clear()
        value = b"y" * size
        producer.produce(CDC_TOPIC, key=key, value=value, on_delivery=lambda err, _: errors.append(err))
        assert producer.flush(30) == 0 and len(errors) == 1
        if errors[0] is None:  # (KafkaError == None raises inside confluent-kafka)
            return value
        assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors
        size -= 8
    raise AssertionError("the broker accepted no message near its limit")


def _json_padding(size: int) -> bytes:
    return b'{"pad": "' + b"z" * size + b'"}'


def _dead_letter_digests(settings, tag: str) -> dict[str, tuple[int, str]]:
    with psycopg2.connect(settings.dwh_readonly_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT message_key, value_bytes, value_sha256 FROM dead_letters WHERE message_key LIKE %s",
            (f"%{tag}-%",),
        )
        rows = cur.fetchall()
    conn.close()
    return {_name(key): (size, digest) for key, size, digest in rows}


def _dead_letter_reasons(settings, tag: str) -> dict[str, tuple[str, int]]:
    with psycopg2.connect(settings.dwh_readonly_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT message_key, reason, value_bytes FROM dead_letters WHERE message_key LIKE %s", (f"%{tag}-%",)
        )
        rows = cur.fetchall()
    conn.close()
    return {_name(key): (reason, size) for key, reason, size in rows}


def _dlq_topic_reasons(settings, tag: str, expected: int) -> dict[str, str]:
    return {key: headers["dlq.reason"] for key, headers in _dlq_topic_headers(settings, tag, expected).items()}


def _dlq_topic_headers(settings, tag: str, expected: int) -> dict[str, dict[str, str]]:
    """The DLQ topic's letters for the source keys of this test, by name: their headers."""
    consumer = Consumer(
        {
            **client_config(settings, ADMIN),
            "group.id": f"test-{tag}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # assign, not subscribe: no group rebalance to wait for.
    partitions = consumer.list_topics(topics.DEAD_LETTERS, timeout=10).topics[topics.DEAD_LETTERS].partitions
    consumer.assign([TopicPartition(topics.DEAD_LETTERS, p, OFFSET_BEGINNING) for p in partitions])
    found: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                if message.error() is not None:
                    continue
                headers = {name: value.decode() for name, value in message.headers() or []}
                key = _name(headers.get("dlq.key"))
                if key.startswith(tag):
                    # Keyed by where the message was read: a redelivered batch's letter has the same key.
                    where = f"{headers['dlq.topic']}/{headers['dlq.partition']}/{headers['dlq.offset']}"
                    assert message.key().decode() == where
                    found[key] = headers
    finally:
        consumer.close()
    return found
