"""The stack's Kafka broker carries messages and its Connect worker offers the Debezium connector."""

import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from instashop.kafka_auth import ADMIN, client_config

pytestmark = pytest.mark.integration

DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"


@pytest.fixture
def topic(settings):
    """A fresh topic, deleted afterwards."""
    admin = AdminClient(client_config(settings, ADMIN))
    name = f"smoke-{uuid.uuid4().hex}"
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=15)
    yield name
    admin.delete_topics([name])[name].result(timeout=15)


def test_a_produced_message_is_consumed_back(settings, topic):
    value = f"hello {uuid.uuid4()}".encode()
    producer = Producer({**client_config(settings, ADMIN), "acks": "all"})
    producer.produce(topic, key=b"smoke", value=value)
    assert producer.flush(15) == 0, "message not acknowledged within 15 s"

    # A consumer group, not a bare assignment: this also proves the offsets topic (one replica) works.
    consumer = Consumer(
        {
            **client_config(settings, ADMIN),
            "group.id": topic,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1)
        assert message is not None, "nothing consumed within 30 s"
        assert message.error() is None, message.error()
        assert (message.key(), message.value()) == (b"smoke", value)
    finally:
        consumer.close()


def test_connect_offers_the_debezium_postgres_connector(settings):
    response = requests.get(f"{settings.connect_url}/connector-plugins", auth=settings.connect_auth, timeout=10)
    response.raise_for_status()
    plugins = {plugin["class"]: plugin for plugin in response.json()}
    assert DEBEZIUM_POSTGRES in plugins
    assert plugins[DEBEZIUM_POSTGRES]["type"] == "source"


def test_connect_runs_kafka_4_3_against_the_stack_broker(settings):
    info = requests.get(f"{settings.connect_url}/", auth=settings.connect_auth, timeout=10).json()
    # Debezium 3.6 is built against Kafka 4.3: the worker must stay on that line.
    assert info["version"].startswith("4.3."), info
    cluster = AdminClient(client_config(settings, ADMIN)).list_topics(timeout=10)
    assert info["kafka_cluster_id"] == cluster.cluster_id
