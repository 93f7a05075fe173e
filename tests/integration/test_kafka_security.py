"""Kafka refuses clients without a login, and each principal may do only its part (issue 16, item 5)."""

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from instashop import kafka_auth
from instashop.capture import topics
from instashop.kafka_auth import ADMIN, AIRFLOW, CONNECT, CONSUMER, SPARK, client_config

pytestmark = pytest.mark.integration

CDC_TOPIC = "instashop.public.transactions"
TIMEOUT = 15.0


def _produce(config: dict, topic: str, idempotent: bool = False) -> KafkaError | None:
    """Produce one tombstone (every reader of these topics skips it); the delivery error (None:
    written). Times out rather than hang.

    `idempotent` as the consumer's producer is: it needs no IDEMPOTENT_WRITE on the cluster since
    Kafka 2.8 (KIP-679), WRITE on any topic will do. (A principal with no WRITE anywhere gets a fatal
    CLUSTER_AUTHORIZATION_FAILED for its producer id instead of the topic's refusal.)"""
    results: list[KafkaError | None] = []
    producer = Producer({**config, "enable.idempotence": idempotent, "message.timeout.ms": 10_000, "log_level": 0})
    producer.produce(topic, key=b"it-auth", value=None, on_delivery=lambda err, _: results.append(err))
    producer.flush(TIMEOUT)
    assert results, f"no delivery report for {topic} within {TIMEOUT} s"
    return results[0]


def _read_one(config: dict, topic: str, group: str, join: bool = False) -> KafkaError | None:
    """Fetch from the start of `topic` (partition 0, or as a member of `group` if `join`); the first
    error (None: a message was read). Without Describe on the topic only `join` hears of the refusal
    ("Subscribed topic not available"); an assigned partition just stays silent."""
    consumer = Consumer(
        {**config, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 0}
    )
    try:
        if join:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        for _ in range(int(TIMEOUT)):
            message = consumer.poll(1.0)
            if message is not None:
                return message.error()
        raise AssertionError(f"neither a message nor an error from {topic} within {TIMEOUT} s")
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def filled(settings):
    """A message on partition 0 of each topic the checks read (the admin writes them: test set-up)."""
    admin = client_config(settings, ADMIN)
    producer = Producer({**admin, "log_level": 0})
    for topic in (CDC_TOPIC, topics.DEAD_LETTERS, topics.ENRICHED_TRANSACTION_ITEMS):
        producer.produce(topic, key=b"it-auth", value=None, partition=0)
    assert producer.flush(TIMEOUT) == 0


def test_a_client_without_a_login_cannot_produce(settings):
    plaintext = {"bootstrap.servers": settings.kafka_bootstrap, "socket.timeout.ms": 5000}
    error = _produce(plaintext, CDC_TOPIC)
    assert error is not None and error.code() == KafkaError._MSG_TIMED_OUT, error


def test_a_wrong_password_is_refused(settings):
    errors: list[KafkaError] = []
    config = {**client_config(settings, CONSUMER), "sasl.password": "not-the-password", "error_cb": errors.append}
    assert _produce(config, topics.DEAD_LETTERS) is not None
    assert any(error.code() == KafkaError._AUTHENTICATION for error in errors), errors


def test_only_connect_writes_the_cdc_topics(settings, filled):
    assert _produce(client_config(settings, CONNECT), CDC_TOPIC, idempotent=True) is None
    for principal in (CONSUMER, SPARK, AIRFLOW):
        error = _produce(client_config(settings, principal), CDC_TOPIC)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (principal, error)


def test_the_consumer_reads_the_cdc_topics_and_writes_only_its_outputs(settings, filled):
    consumer = client_config(settings, CONSUMER)
    assert _read_one(consumer, CDC_TOPIC, kafka_auth.CONSUMER_GROUP) is None
    assert _produce(consumer, topics.DEAD_LETTERS, idempotent=True) is None
    assert _produce(consumer, topics.ENRICHED_TRANSACTION_ITEMS, idempotent=True) is None
    # Not in another group, and it cannot read back its own dead letters.
    denied = _read_one(consumer, CDC_TOPIC, f"it-auth-{uuid.uuid4().hex[:6]}", join=True)
    assert denied is not None and denied.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, denied
    denied = _read_one(consumer, topics.DEAD_LETTERS, kafka_auth.CONSUMER_GROUP)
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied


def test_spark_reads_its_inputs_and_writes_only_its_live_topics(settings, filled):
    spark = client_config(settings, SPARK)
    group = f"{kafka_auth.SPARK_SOURCE_GROUPS}it-{uuid.uuid4().hex[:6]}"
    assert _read_one(spark, CDC_TOPIC, group) is None
    assert _read_one(spark, topics.ENRICHED_TRANSACTION_ITEMS, group) is None
    live = topics.live_aggregates(f"live:it:auth{uuid.uuid4().hex[:6]}")
    try:
        assert _produce(spark, live, idempotent=True) is None  # created on first use, as by the app's relay
        assert _read_one(spark, live, f"{live}.relay") is None
    finally:
        admin = AdminClient(client_config(settings, ADMIN))  # kept: the future dies with its client
        admin.delete_topics([live])[live].result(timeout=TIMEOUT)
    for topic in (topics.DEAD_LETTERS, topics.ENRICHED_TRANSACTION_ITEMS):
        error = _produce(spark, topic)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
    denied = _read_one(spark, topics.DEAD_LETTERS, group, join=True)
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied


def test_connect_cannot_read_what_the_pipeline_derives(settings, filled):
    connect = client_config(settings, CONNECT)
    for topic in (topics.DEAD_LETTERS, topics.ENRICHED_TRANSACTION_ITEMS, CDC_TOPIC):
        denied = _read_one(connect, topic, "connect-it-auth", join=True)
        assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, denied)


def test_airflow_sees_the_consumer_lag_and_nothing_else(settings, filled):
    from instashop.capture.connector import CDC_TOPIC_PATTERN
    from instashop.ops.kafka_lag import consumer_group_lag

    airflow = client_config(settings, AIRFLOW)
    lag = consumer_group_lag(AdminClient(airflow), kafka_auth.CONSUMER_GROUP, CDC_TOPIC_PATTERN)
    assert CDC_TOPIC in lag.per_topic
    denied = _read_one(airflow, CDC_TOPIC, kafka_auth.CONSUMER_GROUP)
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    error = _produce(airflow, topics.DEAD_LETTERS)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
