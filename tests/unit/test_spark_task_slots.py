"""Real-time Mode's task slots are checked at start: too few fail with what to change, not after a
minute with Spark's CONCURRENT_SCHEDULER_INSUFFICIENT_SLOT and a futile restart loop."""

import os

import pytest

from instashop.live.spark import task_slots
from instashop.live.spark.options import MICRO_BATCH, REAL_TIME, StartupError


@pytest.mark.parametrize(
    ("master", "slots"),
    [
        ("local", 1),
        ("local[3]", 3),
        ("local[12,4]", 12),
        ("local[*]", os.cpu_count()),
        ("local[*,4]", os.cpu_count()),
        ("local-cluster[2,3,1024]", 6),
        ("spark://127.0.0.1:7077", None),
        ("yarn", None),
        ("k8s://https://k8s:6443", None),
    ],
)
def test_the_slots_of_a_master_url(master, slots):
    assert task_slots.offered_by_local_master(master) == slots


def test_the_query_holds_a_slot_per_kafka_partition_and_per_stateful_shuffle_partition():
    assert task_slots.needed(kafka_partitions=18, shuffle_partitions=1) == 20
    assert task_slots.needed(kafka_partitions=6, shuffle_partitions=3) == 12


def test_too_few_local_threads_stop_the_start_and_say_what_to_change():
    with pytest.raises(StartupError) as err:
        task_slots.check_local_master("local[4]", REAL_TIME, kafka_partitions=18, shuffle_partitions=1)
    message = str(err.value)
    assert "needs 20 task slots" in message and "offers 4" in message
    assert "--master local[20]" in message and f"--trigger {MICRO_BATCH}" in message


def test_enough_local_threads_pass_and_micro_batch_needs_no_fixed_number():
    task_slots.check_local_master("local[20]", REAL_TIME, kafka_partitions=18, shuffle_partitions=1)
    task_slots.check_local_master("local[1]", MICRO_BATCH, kafka_partitions=18, shuffle_partitions=1)


def test_a_cluster_master_is_asked_until_its_executors_have_registered():
    registered = iter([0, 2, 4, 8])
    slots = task_slots.check_cluster_master("spark://m:7077", 6, 1, lambda: next(registered), wait=5, interval=0)
    assert slots == 8


def test_a_cluster_that_never_offers_enough_fails_after_the_wait():
    with pytest.raises(StartupError, match=r"needs 8 task slots .* offers 4: .*after waiting 0s"):
        task_slots.check_cluster_master("spark://m:7077", 6, 1, lambda: 4, wait=0, interval=0)
