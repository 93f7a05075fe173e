from instashop.capture import topics
from instashop.capture.connector import captured_tables, load_config


def test_every_topic_of_the_pipeline_is_created_up_front_with_the_writers_settings():
    wanted = topics.pipeline_topics()
    config = load_config()
    cdc = [f"instashop.{table}" for table in captured_tables(config)]
    assert cdc and "instashop.public.transactions" in cdc and "instashop.public.transaction_items" in cdc
    assert set(wanted) == {*cdc, topics.ENRICHED_TRANSACTION_ITEMS, topics.DEAD_LETTERS, "instashop.live.aggregates"}
    # as Debezium (topic.creation.default.partitions) and the broker (num.partitions) would create them
    assert {wanted[t].partitions for t in cdc} == {int(config["topic.creation.default.partitions"])}
    assert wanted[topics.DEAD_LETTERS] == wanted[topics.ENRICHED_TRANSACTION_ITEMS] == topics.STREAM
    # the relay's topic: one partition (the query's order), short retention
    assert wanted["instashop.live.aggregates"].partitions == 1
    assert wanted["instashop.live.aggregates"].config["retention.ms"] == str(10 * 60_000)
