"""Live metrics: the shop's CDC topics and the enriched items -> windowed metrics in Redis (`live:*`).

Run it with the main venv's python (what `instashop spark start` does) or with spark-submit:

    .venv/bin/python -m instashop.live.spark.app [--master local[*]] [--trigger real-time]
    .venv/bin/spark-submit --master spark://host:7077 --jars <the four jars below> \\
        --py-files <a zip of plugins/instashop> plugins/instashop/live/spark/app.py

Under plain python the app launches the driver JVM itself, with the Kafka connector jars from the
set-up's Maven cache (.jars/spark-kafka, never the network), the loopback bind shim in LD_PRELOAD
(.lib/bind_loopback.so; under spark-submit put it in its environment yourself) and SIGTERM ignored, so that SIGTERM to
the job's process group reaches only this process: the query is stopped, the heartbeat says
`stopped`, and the JVM exits with us. SIGKILL takes both down, as a crash would; the checkpoint
makes the restart resume from the last committed batch (replays rewrite the same values).

Metrics, windows and key schema: instashop.live.metrics. Parsing: realtime_events. State and
idempotency: realtime_aggregation. Redis writes: redis_sink (and redis_relay in Real-time Mode).

Transactions count once, when placed (op c/r, by created_at, total_amount as created); their status
updates and the purge of failed ones do not change the live figures: a window's orders are the
orders placed in it. Items (and so category and product figures) come from the consumer's enriched
topic. Both drop repeats of a key inside the watermark, so upstream redeliveries don't add.

Triggers, both exact and replay-safe:
- real-time (default): Spark's Real-time Mode. Long-running tasks process each record as it comes
  (commit -> Redis ~0.1 s); --interval (default 5 minutes) is only how often it checkpoints, and
  each checkpoint pauses the stream for seconds (planning the next batch, relaunching the tasks;
  2-3.5 s at 1,000 events/s on 2 cores; expired state is evicted as the batch runs, not in it).
  foreachBatch is not allowed there and PySpark's `foreach` writer waits to fill ~1 MiB batches, so
  the rows go out through Spark's Kafka sink and the relay thread (redis_relay) writes them to Redis.
- micro-batch: batches back to back (or every --interval), each written by `foreachBatch`; a change
  waits for the batch in flight and then its own (~1 s each at 1,000 events/s on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis

from instashop import kafka_auth
from instashop.capture import topics
from instashop.live import metrics as live_metrics
from instashop.live.spark import task_slots
from instashop.live.spark.options import MICRO_BATCH, REAL_TIME, STATE_VERSION, Options, StartupError, scratch_for

# Re-exported: the integration test and the latency benchmark find the app's scratch folder here.
from instashop.live.spark.options import spark_scratch as spark_scratch
from instashop.live.spark.realtime_aggregation import window_aggregates
from instashop.live.spark.realtime_events import events
from instashop.live.spark.redis_relay import Relay, kafka_records
from instashop.live.spark.redis_sink import BatchSink, connect
from instashop.live.spark.session import bind_shim, kafka_jars, spark_session
from instashop.live.spark.supervision import (
    QUERY_RESTART_WINDOW,
    QUERY_RESTARTS,
    Heartbeat,
    Restarts,
    progress_listener,
    stall_timeout,
    stop_query,
    supervise,
)
from instashop.settings import Settings, load_settings

log = logging.getLogger("realtime_metrics")


def parse_args(argv: list[str], settings: Settings) -> Options:
    p = argparse.ArgumentParser(prog="realtime_metrics", description=__doc__.split("\n")[0])
    p.add_argument("--master", help="Spark master URL (default local[<tasks needed>]; micro-batch: local[*])")
    p.add_argument("--trigger", choices=(REAL_TIME, MICRO_BATCH), default=REAL_TIME)
    p.add_argument(
        "--interval",
        help="real-time: checkpoint interval (default 5 minutes, minimum 5 seconds); "
        "micro-batch: trigger interval (default 0 seconds = back to back)",
    )
    # The shop records a visit when it ends: its page views reach Kafka up to ~12 min late (p99 ~8.5).
    p.add_argument("--watermark", default="10 minutes", help="lateness accepted (default %(default)s)")
    spark_dir = settings.var_dir / "spark"
    p.add_argument(
        "--checkpoint",
        default=str(spark_dir / "checkpoints" / f"realtime-metrics-v{STATE_VERSION}"),
        help="folder or URI (file:, s3a://, hdfs://; default %(default)s)",
    )
    p.add_argument("--key-prefix", default=live_metrics.PREFIX, help="Redis key prefix (live or live:<name>)")
    p.add_argument("--topic-prefix", default="instashop", help="Debezium topic.prefix")
    p.add_argument("--items-topic", default=topics.ENRICHED_TRANSACTION_ITEMS)
    p.add_argument("--starting-offsets", choices=("latest", "earliest"), default="latest", help="new checkpoints only")
    # One state-store partition per stateful operator: ~20 % less CPU per batch than two on 2 cores.
    p.add_argument("--shuffle-partitions", type=int, default=1, help="new checkpoints only")
    p.add_argument("--max-offsets-per-trigger", type=int, default=20000, help="micro-batch catch-up bound")
    p.add_argument("--no-ui", dest="ui", action="store_false", help="no Spark UI (default: 127.0.0.1:SPARK_UI_PORT)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)")
    p.add_argument("--job-marker", help=argparse.SUPPRESS)  # tags the command line (instashop.ops.jobs)
    a = p.parse_args(argv)
    interval = a.interval or ("5 minutes" if a.trigger == REAL_TIME else "0 seconds")
    return Options(
        a.master,
        a.trigger,
        interval,
        a.watermark,
        a.checkpoint,
        scratch_for(a.checkpoint, spark_dir / "scratch"),
        a.key_prefix,
        a.topic_prefix,
        a.items_topic,
        a.starting_offsets,
        a.shuffle_partitions,
        a.max_offsets_per_trigger,
        a.ui,
        tuple(a.conf),
    )


# --- start-up checks ----------------------------------------------------------------------------


def check_redis(url: str) -> redis.Redis:
    client = connect(url)
    try:
        client.ping()
    except redis.AuthenticationError as err:
        raise StartupError(f"Redis at {_where(url)} refused the login in REDIS_LIVE_WRITER_URL: {err}") from None
    except redis.RedisError as err:
        raise StartupError(f"Redis at {_where(url)} is unreachable: {err}") from None
    return client


def check_kafka(kafka: dict[str, Any], options: Options) -> int:
    """Check the topics the app reads exist, create its own relay topic, and return the partitions
    it reads. `kafka` is the app's client config (principal `spark`).

    The topics it reads are created up front by `make up` (`instashop topics ensure`, as admin):
    only Debezium's principal may write them and only admin create them. Reading a topic that did
    not exist failed the query (UnknownTopicOrPartition), and a Real-time query, sized by the
    partitions present at start, had too few task slots later: a missing topic stops the start.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    bootstrap = kafka["bootstrap.servers"]
    try:
        if options.trigger == REAL_TIME:
            own = {topics.live_aggregates(options.key_prefix): topics.LIVE_AGGREGATES}
            if created := topics.ensure(kafka, own):
                log.info("created topics: %s", ", ".join(created))
        admin = AdminClient({**kafka, "socket.connection.setup.timeout.ms": 5000})
        metadata = admin.list_topics(timeout=10).topics
    except KafkaException as err:
        raise StartupError(f"Kafka at {bootstrap} is unreachable: {err.args[0]}") from None
    missing = [t for t in options.topics if t not in metadata]
    if missing:
        raise StartupError(
            f"topics {', '.join(missing)} do not exist in Kafka at {bootstrap} (or `spark` may not read them): "
            "`make up` or `instashop topics ensure` creates them"
        )
    return sum(len(metadata[t].partitions) for t in options.topics)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def start_query(spark, options: Options, settings: Settings, heartbeat: Heartbeat):
    kafka = (
        spark.readStream.format("kafka")
        .options(**kafka_auth.spark_options(settings, kafka_auth.SPARK))
        .option("subscribe", ",".join(options.topics))
        .option("startingOffsets", options.starting_offsets)
        .option("failOnDataLoss", "false")  # retention may delete what a long-stopped app never read
    )
    if options.trigger == MICRO_BATCH:
        # Reading a partition up to its end otherwise parks each fetch for the 500 ms default.
        # Real-time Mode keeps that default: its readers poll without end, and a parked fetch
        # returns as soon as a record arrives; 10 ms there cost ~0.5 core for idle fetches alone.
        kafka = kafka.option("kafka.fetch.max.wait.ms", "10")
        kafka = kafka.option("maxOffsetsPerTrigger", options.max_offsets_per_trigger)
    records = kafka.load()
    if options.trigger == MICRO_BATCH:
        # One scan task per Kafka partition (18) costs more scheduling than reading on 2 cores.
        records = records.coalesce(options.shuffle_partitions)
    aggregates = window_aggregates(events(records, options.items_topic), options.watermark)
    if options.trigger == REAL_TIME:
        # The JVM's Kafka sink; the relay thread takes the rows on to Redis (see redis_relay).
        writer = (
            aggregates.select(*kafka_records(aggregates))
            .writeStream.format("kafka")
            .options(**kafka_auth.spark_options(settings, kafka_auth.SPARK))
            .option("topic", topics.live_aggregates(options.key_prefix))
            .option("kafka.linger.ms", "0")  # send each row at once (the client waits 5 ms by default)
            .trigger(realTime=options.interval)  # type: ignore[call-overload]  # PySpark 4.3 stubs lack it
        )
    else:
        sink = BatchSink(settings.redis_live_writer_url, options.key_prefix, on_rows=heartbeat.rows_written)
        writer = aggregates.writeStream.foreachBatch(sink).trigger(processingTime=options.interval)
    writer = writer.queryName("live_metrics").outputMode("update").option("checkpointLocation", options.checkpoint)
    return writer.start()


def run(argv: list[str]) -> int:
    settings = load_settings()
    options = parse_args(argv, settings)
    stop = threading.Event()
    _on_signals(stop)
    try:
        client = check_redis(settings.redis_live_writer_url)
        partitions = check_kafka(kafka_auth.client_config(settings, kafka_auth.SPARK), options)
        if "PYSPARK_GATEWAY_PORT" not in os.environ:  # we launch the JVM (see _jvm_environment)
            kafka_jars(settings)
            bind_shim(settings)
            if options.master:
                task_slots.check_local_master(options.master, options.trigger, partitions, options.shuffle_partitions)
    except StartupError as err:
        log.error("cannot start: %s", err)
        return 2
    heartbeat = Heartbeat(client, options)
    # A new run: clear what an earlier process reported, so no reader takes it for this one's progress.
    heartbeat.write(**{**dict.fromkeys(live_metrics.HEARTBEAT_FIELDS), **heartbeat.fields})
    heartbeat.write(status="starting", started_at=datetime.now(UTC).isoformat())
    spark = spark_session(options, settings, partitions)
    _on_signals(stop)  # again: SparkContext replaced the SIGINT handler with its own
    try:
        task_slots.check_session(spark.sparkContext, options.trigger, partitions, options.shuffle_partitions)
    except StartupError as err:
        log.error("cannot start: %s", err)
        heartbeat.write(status="failed", error=str(err)[:500])
        spark.stop()
        return 2
    spark.streams.addListener(progress_listener(heartbeat))
    relay = start_relay(options, settings, heartbeat, stop) if options.trigger == REAL_TIME else None
    restarts = Restarts(QUERY_RESTARTS, QUERY_RESTART_WINDOW)
    while True:
        query = start_query(spark, options, settings, heartbeat)
        log.info("query %s (%s, %s) writing to %s:*", query.id, options.trigger, options.interval, options.key_prefix)
        supervise(query, heartbeat, stop, stall_after=stall_timeout(options))
        if stop.is_set() or query.isActive or not restarts.allow():
            break
        # Real-time Mode does not retry a failed task alone: the batch, and so the query, fails. From
        # its checkpoint the query replays the batch; the Redis values are absolute, so the replay
        # rewrites the same values (and the relay goes on).
        log.error("query failed, restarting it from its checkpoint: %s", query.exception())
        heartbeat.write(status="restarting", error=str(query.exception())[:500])
    return _finish(spark, query, heartbeat, stop, relay)


def start_relay(options: Options, settings: Settings, heartbeat: Heartbeat, stop: threading.Event) -> Relay:
    """Real-time Mode's Redis writer, a thread of ours; a failure of it sets `stop` (see redis_relay)."""
    topic = topics.live_aggregates(options.key_prefix)  # created by check_kafka
    kafka = kafka_auth.client_config(settings, kafka_auth.SPARK)
    relay = Relay(kafka, topic, settings.redis_live_writer_url, options.key_prefix, heartbeat.rows_written)
    relay.start(on_failure=stop)
    return relay


def _on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def _finish(spark, query, heartbeat: Heartbeat, stop: threading.Event, relay: Relay | None) -> int:
    failure = None if query.isActive else query.exception()
    if stop.is_set() and query.isActive:
        log.info("stop requested: stopping the query")
        heartbeat.write(status="stopping")
        stop_query(query, str(heartbeat.fields["mode"]))
    if relay:
        relay.stop()  # after the query: what it wrote to the topic reaches Redis first
        failure = failure or relay.error
    heartbeat.write(status="failed" if failure else "stopped", error=str(failure) if failure else None)
    spark.stop()
    if failure:
        log.error("query failed: %s", failure)
        return 1
    log.info("stopped")
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
