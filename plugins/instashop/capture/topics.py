"""The pipeline's Kafka topics: their names and settings, and `ensure`, which creates the missing ones.

Every topic is created up front (`make up`, `instashop connector register`; the Spark app its own)
rather than on first use: a reader that subscribes before a topic exists fails or is sized for
fewer partitions (the Spark app's Real-time Mode holds one task per partition for a whole batch).
The settings are the ones the writers would otherwise create them with: Debezium's
`topic.creation.default.*` for the CDC topics, the broker's defaults for the consumer's topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Transaction items as written to the DWH, enriched with product name and category (for Spark).
ENRICHED_TRANSACTION_ITEMS = "instashop.enriched.transaction_items"
# Messages the consumer could not decode or map, with the reason in the `dlq.reason` header.
DEAD_LETTERS = "instashop.dlq"
# The connector's topic.creation.default.partitions and the broker's num.partitions (one node).
PARTITIONS = 3


@dataclass(frozen=True)
class TopicSpec:
    partitions: int = PARTITIONS
    config: dict[str, str] = field(default_factory=dict)  # beyond the broker's defaults


STREAM = TopicSpec()
# The live aggregates only bridge the Spark query and its relay, which follows within milliseconds:
# one partition (every group's rows in the order the query emitted them), ten minutes of rows
# (~3,400/s at 1,000 events/s) in one-minute segments, so that retention can drop them.
LIVE_AGGREGATES = TopicSpec(
    1, {"retention.ms": str(10 * 60_000), "segment.ms": str(60_000), "retention.bytes": str(512 << 20)}
)


def live_aggregates(key_prefix: str) -> str:
    """The Spark app's rows on their way to Redis in Real-time Mode (plugins/instashop/live/spark/redis_relay), one
    topic per key prefix: live -> instashop.live.aggregates, live:it:ab12 -> instashop.live.it.ab12.aggregates."""
    return f"instashop.{key_prefix.replace(':', '.')}.aggregates"


def cdc_topics(topic_prefix: str, tables: list[str]) -> list[str]:
    """Debezium's topic names: <topic.prefix>.<schema>.<table> for each `schema.table`."""
    return [f"{topic_prefix}.{table}" for table in tables]


def pipeline_topics() -> dict[str, TopicSpec]:
    """Every topic of the default pipeline: the connector's CDC topics, the consumer's and the Spark app's."""
    from instashop.capture.connector import captured_tables, load_config

    config = load_config()
    cdc = cdc_topics(config["topic.prefix"], captured_tables(config))
    return {
        **dict.fromkeys(cdc, STREAM),
        ENRICHED_TRANSACTION_ITEMS: STREAM,
        DEAD_LETTERS: STREAM,
        live_aggregates("live"): LIVE_AGGREGATES,
    }


def ensure(kafka: dict[str, Any], wanted: dict[str, TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the wanted topics that do not exist yet (idempotent); returns those created.

    `kafka` is the client config of a principal allowed to create them (kafka_auth.client_config):
    `admin` for the pipeline's topics, the Spark app's own for its `instashop.live.*` topic.
    An existing topic is left as it is, whatever its settings: partitions cannot shrink, and a
    topic with data is not ours to reconfigure here.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**kafka, "socket.connection.setup.timeout.ms": 5000})
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(name, spec.partitions, config=spec.config) for name, spec in wanted.items() if name not in existing
    ]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another process was quicker
                raise
    return created
