"""Consumer-group lag from committed, start and end offsets."""

from instashop.ops.kafka_lag import partition_lags, summarize


def test_lag_is_end_minus_committed_or_minus_start_without_a_commit():
    end = {("a", 0): 100, ("a", 1): 50, ("b", 0): 10}
    start = {("a", 0): 0, ("a", 1): 20, ("b", 0): 0}
    committed = {("a", 0): 90, ("a", 1): -1001}  # -1001: no committed offset
    assert partition_lags(committed, start, end) == {("a", 0): 10, ("a", 1): 30, ("b", 0): 10}
    lag = summarize("g", committed, start, end)
    assert (lag.total, lag.per_topic, lag.uncommitted_partitions) == (50, {"a": 40, "b": 10}, 2)


def test_a_commit_past_the_end_is_no_lag():
    assert partition_lags({("a", 0): 12}, {("a", 0): 0}, {("a", 0): 10}) == {("a", 0): 0}
