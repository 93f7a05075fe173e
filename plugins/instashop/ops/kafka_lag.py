"""How far a consumer group is behind on the topics it subscribes to, from Kafka's admin API.

Lag of a partition = its end offset minus the group's committed offset (or minus the start offset
when the group never committed there). Read-only: nothing joins the group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

TIMEOUT = 10.0


@dataclass(frozen=True)
class GroupLag:
    group: str
    total: int
    per_topic: dict[str, int]
    uncommitted_partitions: int  # partitions the group never committed an offset on


Offsets = dict[tuple[str, int], int]


def partition_lags(committed: Offsets, start: Offsets, end: Offsets) -> dict[tuple[str, int], int]:
    """Per partition: end - committed, or end - start where the group has no commit (negative: 0)."""
    lags = {}
    for key, end_offset in end.items():
        position = committed.get(key, -1)
        if position < 0:
            position = start.get(key, 0)
        lags[key] = max(0, end_offset - position)
    return lags


def summarize(group: str, committed: Offsets, start: Offsets, end: Offsets) -> GroupLag:
    lags = partition_lags(committed, start, end)
    per_topic: dict[str, int] = {}
    for (topic, _), lag in sorted(lags.items()):
        per_topic[topic] = per_topic.get(topic, 0) + lag
    uncommitted = sum(1 for key in end if committed.get(key, -1) < 0)
    return GroupLag(group, sum(lags.values()), per_topic, uncommitted)


def consumer_group_lag(admin: AdminClient, group: str, topic_pattern: str, timeout: float = TIMEOUT) -> GroupLag:
    partitions = _partitions(admin, topic_pattern, timeout)
    if not partitions:
        return GroupLag(group, 0, {}, 0)
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    answer = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result()
    committed = {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions}
    start = _offsets(admin, partitions, OffsetSpec.earliest(), timeout)
    end = _offsets(admin, partitions, OffsetSpec.latest(), timeout)
    return summarize(group, committed, start, end)


def _partitions(admin: AdminClient, topic_pattern: str, timeout: float) -> list[TopicPartition]:
    pattern = re.compile(topic_pattern)
    topics = admin.list_topics(timeout=timeout).topics
    return [
        TopicPartition(name, partition)
        for name, meta in sorted(topics.items())
        if pattern.match(name)
        for partition in sorted(meta.partitions)
    ]


def _offsets(admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float) -> Offsets:
    futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
