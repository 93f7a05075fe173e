"""Kafka topics of the pipeline besides Debezium's CDC topics (see connector.CDC_TOPIC_PATTERN)."""

# Transaction items as written to the DWH, enriched with product name and category (for Spark).
ENRICHED_TRANSACTION_ITEMS = "instashop.enriched.transaction_items"
# Messages the consumer could not decode or map, with the reason in the `dlq.reason` header.
DEAD_LETTERS = "instashop.dlq"


def live_aggregates(key_prefix: str) -> str:
    """The Spark app's rows on their way to Redis in Real-time Mode (spark_apps/redis_relay), one
    topic per key prefix: live -> instashop.live.aggregates, live:it:ab12 -> instashop.live.it.ab12.aggregates."""
    return f"instashop.{key_prefix.replace(':', '.')}.aggregates"
