"""Records on the real Kafka topics as admin: produced as given (malformed ones too, with their own
timestamps), and read back by the transaction they are about (a CDC change or an enriched item).
"""

import json
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from instashop.kafka_auth import ADMIN, client_config


def messages_of(settings, topic: str, since: float, transaction_id: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the messages of `topic` since `since` of this transaction (a change or an item)."""
    consumer = Consumer({**client_config(settings, ADMIN), "group.id": "test-live", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    starts = consumer.offsets_for_times([TopicPartition(topic, p, int(since * 1000)) for p in partitions], timeout=10)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    consumer.assign([tp for tp in starts if tp.offset >= 0])
    found, done = [], {tp.partition for tp in starts if tp.offset < 0 or tp.offset >= ends[tp.partition]}
    deadline = time.monotonic() + 30
    while len(done) < len(partitions) and time.monotonic() < deadline:
        for message in consumer.consume(500, 1.0):
            if message.error():
                continue
            if message.value() and _transaction_id(message.value()) == transaction_id:
                found.append((message.key(), message.value()))
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
    consumer.close()
    return found


def _transaction_id(value: bytes) -> int | None:
    """A CDC change's `after.transaction_id`, or an enriched item's `transaction_id`."""
    try:
        record = json.loads(value)
    except ValueError:  # the malformed records other tests put on the topics
        return None
    if not isinstance(record, dict):
        return None
    after = record.get("after") if isinstance(record.get("after"), dict) else {}
    return after.get("transaction_id") or record.get("transaction_id")


def produce(settings, records: list[tuple[str, bytes | None, bytes, int | None]]) -> None:
    """(topic, key, value, Kafka timestamp ms or None) onto the real topics."""
    producer = Producer(client_config(settings, ADMIN))
    for topic, key, value, timestamp in records:
        producer.produce(topic, key=key, value=value, **({"timestamp": timestamp} if timestamp else {}))
    assert producer.flush(10) == 0
