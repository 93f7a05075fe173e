"""Real-time Mode's task slots: how many the query holds, how many the master offers, checked at start.

A Real-time batch runs all its tasks at once for the whole batch: one per Kafka partition it reads
plus one per shuffle partition of each of the query's two stateful stages (the dedup and the
window aggregation). With fewer slots Spark fails the query with
CONCURRENT_SCHEDULER_INSUFFICIENT_SLOT, after the driver JVM, the Kafka source and the planning
have taken their minute; the app's query-restart loop would then retry it in vain. We check first
and say what to change. The micro-batch trigger runs on any number of slots: it is the fallback.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from instashop.live.spark.options import MICRO_BATCH, REAL_TIME, StartupError

STATEFUL_STAGES = 2  # the dedup of repeated keys, then the window aggregation
# local[N], local[N,F], local[*], local[*,F]; local-cluster[workers,cores,memory] (Spark's tests).
_LOCAL = re.compile(r"local(?:\[(?P<threads>\*|\d+)(?:,\d+)?\])?")
_LOCAL_CLUSTER = re.compile(r"local-cluster\[(?P<workers>\d+),(?P<cores>\d+),\d+\]")


def needed(kafka_partitions: int, shuffle_partitions: int) -> int:
    """Slots a Real-time batch of this query holds at once."""
    return kafka_partitions + STATEFUL_STAGES * shuffle_partitions


def offered_by_local_master(master: str) -> int | None:
    """The slots a local master offers (its threads), or None for a cluster master (spark://, yarn,
    k8s://), whose slots are the cores of the executors that register."""
    if match := _LOCAL.fullmatch(master):
        threads = match["threads"]
        if threads is None:
            return 1
        return (os.cpu_count() or 1) if threads == "*" else int(threads)
    if match := _LOCAL_CLUSTER.fullmatch(master):
        return int(match["workers"]) * int(match["cores"])
    return None


def shortage(master: str, offered: int, kafka_partitions: int, shuffle_partitions: int) -> str | None:
    """Why this master cannot run the Real-time query, or None when it can; pure."""
    need = needed(kafka_partitions, shuffle_partitions)
    if offered >= need:
        return None
    return (
        f"Real-time Mode needs {need} task slots at once ({kafka_partitions} Kafka partitions + "
        f"{STATEFUL_STAGES} stateful stages x {shuffle_partitions} shuffle partitions) and the master "
        f"{master} offers {offered}: give it more (--master local[{need}], more cores or workers on a "
        f"cluster, fewer --shuffle-partitions on a new checkpoint) or run --trigger {MICRO_BATCH}, "
        "which needs no fixed number"
    )


def check_local_master(master: str, trigger: str, kafka_partitions: int, shuffle_partitions: int) -> None:
    """Before the JVM starts: a local master's threads are known from its URL."""
    if trigger != REAL_TIME:
        return
    offered = offered_by_local_master(master)
    if offered is not None and (reason := shortage(master, offered, kafka_partitions, shuffle_partitions)):
        raise StartupError(reason)


def check_cluster_master(
    master: str,
    kafka_partitions: int,
    shuffle_partitions: int,
    offered: Callable[[], int],
    wait: float,
    interval: float = 1.0,
) -> int:
    """Once the driver runs on a cluster master: executors register one by one after the driver
    starts, so `offered` (the cores of the registered executors) is asked until it suffices or
    `wait` seconds have passed. Returns the slots offered."""
    deadline = time.monotonic() + wait
    while True:
        slots = offered()
        reason = shortage(master, slots, kafka_partitions, shuffle_partitions)
        if reason is None:
            return slots
        if time.monotonic() >= deadline:
            raise StartupError(f"{reason} (after waiting {wait:.0f}s for executors to register)")
        time.sleep(interval)


def check_session(sc, trigger: str, kafka_partitions: int, shuffle_partitions: int, wait: float = 120.0) -> None:
    """With the driver running, whoever chose the master (our --master, our default, spark-submit)."""
    if trigger != REAL_TIME:
        return
    master = sc.master
    if offered_by_local_master(master) is not None:
        check_local_master(master, trigger, kafka_partitions, shuffle_partitions)
        return
    check_cluster_master(master, kafka_partitions, shuffle_partitions, lambda: concurrent_tasks(sc), wait)


def concurrent_tasks(sc) -> int:
    """The tasks the registered executors run at once: what Spark's own slot check compares with
    (SparkContext.maxNumConcurrentTasks, Scala-private, hence through the JVM handle)."""
    jsc = sc._jsc.sc()
    return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))
