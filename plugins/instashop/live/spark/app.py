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
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from instashop import kafka_auth
from instashop.capture import topics
from instashop.live import metrics as live_metrics
from instashop.live.spark.realtime_aggregation import window_aggregates
from instashop.live.spark.realtime_events import cdc_topics, events
from instashop.live.spark.redis_relay import Relay, kafka_records
from instashop.live.spark.redis_sink import BatchSink, connect
from instashop.settings import Settings, load_settings

log = logging.getLogger("realtime_metrics")

APP_NAME = "instashop-realtime-metrics"
MICRO_BATCH, REAL_TIME = "micro-batch", "real-time"
# The connector and its own dependencies; the folder's older scala-library, slf4j, spark-tags,
# lz4, snappy and hadoop jars duplicate (older versions of) jars PySpark already ships.
KAFKA_JARS = ("spark-sql-kafka-0-10_", "spark-token-provider-kafka-0-10_", "kafka-clients-", "commons-pool2-")
# Bumped whenever the query's state (operators, keys) changes shape: a checkpoint written by another
# shape cannot be resumed, so the default checkpoint directory moves on with it.
STATE_VERSION = 2
HEARTBEAT_SECONDS = 1.0
# A batch this long is stuck, not slow (catch-up batches are bounded by --max-offsets-per-trigger).
STALL_SECONDS = 180.0
TOP_PRODUCTS_SECONDS = 2.0
# Attempts per task (local[N,F]): a task that fails (a stray connection to its streaming-shuffle
# port, a Kafka hiccup) is tried again before its failure ends the query.
TASK_ATTEMPTS = 4
# A failed query is started again from its checkpoint in this process, up to this many times in
# QUERY_RESTART_WINDOW seconds; past that the app exits and the supervisor takes over.
QUERY_RESTARTS = 5
QUERY_RESTART_WINDOW = 600.0
# The C shim that binds the JVM's wildcard listeners to loopback (setup/spark/bind_loopback.c).
BIND_SHIM = "bind_loopback.so"


class StartupError(RuntimeError):
    """Something the app needs is missing or unreachable; the message says what."""


def spark_scratch(checkpoint: Path) -> Path:
    """Where the Spark app puts its driver's temporary files: beside its checkpoint (one app per
    checkpoint), emptied at each start, so a killed driver's leftovers never pile up."""
    return checkpoint.with_name(f"{checkpoint.name}.scratch")


@dataclass(frozen=True)
class Options:
    master: str | None
    trigger: str
    interval: str
    watermark: str
    checkpoint: Path
    key_prefix: str
    topic_prefix: str
    items_topic: str
    starting_offsets: str
    shuffle_partitions: int
    max_offsets_per_trigger: int
    ui: bool
    conf: tuple[str, ...] = ()  # extra Spark settings, key=value

    @property
    def topics(self) -> list[str]:
        return [*cdc_topics(self.topic_prefix), self.items_topic]

    @property
    def scratch(self) -> Path:
        return spark_scratch(self.checkpoint)


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
    checkpoints = settings.var_dir / "spark" / "checkpoints"
    p.add_argument("--checkpoint", type=Path, default=checkpoints / f"realtime-metrics-v{STATE_VERSION}")
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


def kafka_jars(settings: Settings) -> list[str]:
    folder = settings.jars_dir / "spark-kafka"
    jars = sorted(str(j) for j in folder.glob("*.jar") if j.name.startswith(KAFKA_JARS))
    if len(jars) != len(KAFKA_JARS):
        raise StartupError(f"Kafka connector jars missing in {folder} (found {jars}): run `make setup`")
    return jars


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


# --- Spark --------------------------------------------------------------------------------------


def spark_session(options: Options, settings: Settings, partitions: int):
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = SparkConf().setAppName(APP_NAME).setAll(_conf(options, settings, os.environ["SPARK_LOCAL_IP"]).items())
    launched = "PYSPARK_GATEWAY_PORT" not in os.environ
    if launched:  # we launch the JVM: master, jars and scratch are ours to set
        conf.setMaster(options.master or _default_master(options, partitions))
        conf.set("spark.jars", ",".join(kafka_jars(settings)))
        _use_fresh_scratch(conf, options.scratch)
    elif options.master:  # under spark-submit its --master and --jars apply, unless told otherwise
        conf.setMaster(options.master)
    # The JVM inherits an ignored SIGTERM (the JVM keeps an ignored signal ignored): a SIGTERM to our
    # process group then stops the query through our handler instead of killing the driver mid-batch.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with _jvm_environment(settings if launched else None):
            # The gateway gets the settings on spark-submit's command line (visible in `ps`): the
            # secret is set afterwards, through py4j, on the SparkContext's configuration.
            gateway = launch_gateway(conf)
        if not conf.get("spark.master", "").startswith("local"):
            conf.set("spark.authenticate.secret", settings.spark_auth_secret)
        sc = SparkContext(conf=conf, gateway=gateway)
    finally:
        signal.signal(signal.SIGTERM, previous)
    sc.setLogLevel("WARN")
    return SparkSession(sc)


@contextmanager
def _jvm_environment(settings: Settings | None):
    """The launched driver JVM's extra environment: the loopback bind shim in LD_PRELOAD.

    Real-time Mode's streaming-shuffle servers (one per task) bind every interface whatever the
    configuration says: Spark 4.3 creates them with TransportContext.createServer(), whose host is
    null (wildcard), and with no authentication bootstrap. The shim turns the JVM's wildcard binds
    into loopback ones. The Python process itself is already running: only the JVM is affected.
    """
    if settings is None:  # under spark-submit: its own JVM, launched before us
        yield
        return
    shim = bind_shim(settings)
    before = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = f"{shim} {before}".strip() if before else str(shim)
    try:
        yield
    finally:
        if before is None:
            del os.environ["LD_PRELOAD"]
        else:
            os.environ["LD_PRELOAD"] = before


def bind_shim(settings: Settings) -> Path:
    shim = settings.jars_dir.parent / ".lib" / BIND_SHIM
    if not shim.exists():
        raise StartupError(f"{shim} is missing: run `make setup`")
    return shim


def _use_fresh_scratch(conf, scratch: Path) -> None:
    """Point the driver's temporary files at `scratch`, emptied first.

    A SIGKILLed driver (a crash, the supervisor, the chaos soak) leaves them behind: its state
    stores' RocksDB copies and the block manager in spark.local.dir, and, in the JVM's temp dir,
    the native libraries RocksDB and LZ4 unpack at every start (~15 MB). In /tmp nobody would clear
    them; here the next start does.
    """
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "tmp").mkdir(parents=True, exist_ok=True)  # rmtree ignored what it could not remove
    if not conf.contains("spark.local.dir"):  # a --conf of the user's wins
        conf.set("spark.local.dir", str(scratch / "local"))
    # The launcher adds SPARK_SUBMIT_OPTS to the driver JVM's command line (client mode).
    submit_opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
    os.environ["SPARK_SUBMIT_OPTS"] = f"{submit_opts} -Djava.io.tmpdir={scratch / 'tmp'}".strip()


def _default_master(options: Options, partitions: int) -> str:
    if options.trigger == MICRO_BATCH:
        return f"local[*,{TASK_ATTEMPTS}]"
    # Real-time Mode holds a task per Kafka partition plus one per shuffle partition of each stateful
    # stage for the whole batch: local threads, mostly waiting on Kafka, not cores.
    return f"local[{partitions + 2 * options.shuffle_partitions + 2},{TASK_ATTEMPTS}]"


def _conf(options: Options, settings: Settings, host: str) -> dict[str, str]:
    return {
        "spark.driver.host": host,
        "spark.driver.bindAddress": host,
        # The driver's RPC and block transfer ask peers for a shared secret: in local mode one the JVM
        # generates itself (never written anywhere), with another master SPARK_AUTH_SECRET (.env).
        "spark.authenticate": "true",
        "spark.ui.enabled": str(options.ui).lower(),
        "spark.ui.port": str(settings.port("spark_ui")),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(settings.var_dir / "spark" / "warehouse"),
        "spark.sql.session.timeZone": "UTC",
        # Hadoop's file system applies its own umask (022), not the process's: checkpoints and state
        # stay private to the user running the app, like the rest of var/.
        "spark.hadoop.fs.permissions.umask-mode": "077",
        "spark.sql.shuffle.partitions": str(options.shuffle_partitions),
        "spark.sql.adaptive.enabled": "false",
        # RocksDB keeps the dedup keys off the JVM heap; changelog checkpointing writes only the
        # batch's changes. Format v2 is what Real-time Mode needs, used by both triggers alike.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.stateStore.checkpointFormatVersion": "2",
        # Counting the state's rows costs RocksDB a lookup on every write (Spark's RocksDB tuning advice).
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        # No batch without data just to move the watermark and evict state: a change arriving
        # meanwhile would wait for it. Eviction happens in the next batch with data instead.
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
        # The dedupe (and Real-time Mode's aggregate) removes up to 2 expired keys per input row as
        # the batch runs, not all at its end: in Real-time Mode that end is the checkpoint's pause,
        # and the eviction was its biggest part (~0.5-2.4 s of 3.7-6.7 s at 1,000 events/s).
        "spark.sql.streaming.statefulOperator.incrementalCleanupFactor": "2",
        "spark.sql.streaming.minBatchesToRetain": "20",
        # Real-time Mode's streaming shuffle holds a partly filled buffer up to 50 ms by default, at
        # each of our two shuffles: at live rates its 32 KiB never fill, so that wait was all latency.
        "spark.shuffle.streaming.networkBufferMaxWaitTimeMs": "5",
        # Without native Hadoop, the default (FileContext) checkpoint manager forks `readlink` for
        # every rename (and `chmod` for every file): ~40 processes per batch. The FileSystem API
        # renames in-process. (fs.file.impl=RawLocalFileSystem would save the chmods too, but
        # RocksDB's snapshot loading requires the checksummed LocalFileSystem.)
        "spark.sql.streaming.checkpointFileManagerClass": (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        ),
        **dict(item.split("=", 1) for item in options.conf),
    }


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
            .trigger(realTime=options.interval)
        )
    else:
        sink = BatchSink(settings.redis_live_writer_url, options.key_prefix, on_rows=heartbeat.rows_written)
        writer = aggregates.writeStream.foreachBatch(sink).trigger(processingTime=options.interval)
    writer = writer.queryName("live_metrics").outputMode("update").option("checkpointLocation", str(options.checkpoint))
    return writer.start()


# --- supervision: heartbeat, top products, SIGTERM ----------------------------------------------


class Heartbeat:
    """The `live:heartbeat` hash: progress of every batch (listener) and liveness every second."""

    def __init__(self, client: redis.Redis, options: Options) -> None:
        self.client, self.prefix = client, options.key_prefix
        self.fields: dict[str, object] = {"mode": options.trigger, "pid": os.getpid()}
        self.last_event_time: datetime | None = None
        self.late_rows = 0  # dropped for arriving after the watermark, since this process started
        self.stream_alive = time.monotonic()  # last sign of life of the stream thread

    def write(self, **fields: object) -> None:
        self.fields.update(fields)
        try:
            live_metrics.write_heartbeat(self.client, self.fields, prefix=self.prefix)
        except redis.RedisError as err:  # Redis down for a moment: the sink's own errors fail the query
            log.warning("heartbeat not written: %s", err)

    def rows_written(self, last_event_time: datetime | None) -> None:
        """From the sink or relay: the newest event time it wrote (exact, not window-truncated). The
        next write publishes it: in Real-time Mode the relay writes all along, batches end rarely."""
        if last_event_time and (self.last_event_time is None or last_event_time > self.last_event_time):
            self.last_event_time = last_event_time
            self.fields["last_event_time"] = last_event_time.replace(tzinfo=UTC).isoformat()

    def alive(self) -> None:
        self.stream_alive = time.monotonic()

    def progress(self, progress: dict) -> None:
        self.alive()
        event_time = progress.get("eventTime") or {}
        late = sum(op.get("numRowsDroppedByWatermark", 0) for op in progress.get("stateOperators") or [])
        self.late_rows += late
        self.write(
            status="running",
            batch_id=progress.get("batchId"),
            input_rows_per_second=round(progress.get("inputRowsPerSecond") or 0.0, 1),
            processed_rows_per_second=round(progress.get("processedRowsPerSecond") or 0.0, 1),
            batch_duration_ms=(progress.get("durationMs") or {}).get("triggerExecution"),
            last_event_time=self.fields.get("last_event_time") or event_time.get("max"),
            watermark=event_time.get("watermark"),
            late_rows=self.late_rows,
        )


def progress_listener(heartbeat: Heartbeat):
    from pyspark.sql.streaming import StreamingQueryListener

    class ProgressListener(StreamingQueryListener):
        """Every batch's progress: one log line and the heartbeat (runs on py4j's callback thread)."""

        def onQueryStarted(self, event) -> None:
            heartbeat.alive()
            heartbeat.write(status="running", query_id=str(event.id), run_id=str(event.runId))

        def onQueryProgress(self, event) -> None:
            progress = json.loads(event.progress.json)
            log.info("batch %s: %s", progress.get("batchId"), _summary(progress))
            heartbeat.progress(progress)

        def onQueryIdle(self, event) -> None:
            heartbeat.alive()  # no new data: Spark says so every 10 s

        def onQueryTerminated(self, event) -> None:
            pass

    return ProgressListener()


def _summary(progress: dict) -> str:
    durations = " ".join(f"{k}={v}" for k, v in (progress.get("durationMs") or {}).items())
    ops = progress.get("stateOperators") or []
    state = " ".join(
        f"{op.get('operatorName')}[rows={op.get('numRowsTotal')} upd={op.get('allUpdatesTimeMs')}"
        f" rm={op.get('allRemovalsTimeMs')} commit={op.get('commitTimeMs')}]"
        for op in ops
    )
    return f"{progress.get('numInputRows')} rows, ms: {durations}, state: {state}"


def supervise(query, heartbeat: Heartbeat, stop: threading.Event, stall_after: float) -> None:
    """Until SIGTERM or the query ends: liveness in the heartbeat, the top-products ranking refreshed.

    The heartbeat is refreshed only while the stream thread shows signs of life (a batch's progress,
    or Spark's idle event): a batch stuck for `stall_after` seconds lets it go stale, which is what
    the supervisor restarts a job for.
    """
    from pyspark.errors import StreamingQueryException

    next_top, stalled = 0.0, False
    while not stop.is_set() and query.isActive:
        silent = time.monotonic() - heartbeat.stream_alive
        if silent < stall_after:
            heartbeat.write()
        elif not stalled:
            log.warning("no progress for %.0f s: heartbeat left to go stale", silent)
        stalled = silent >= stall_after
        if time.monotonic() >= next_top:
            try:
                live_metrics.refresh_top_products(heartbeat.client, prefix=heartbeat.prefix)
            except redis.RedisError as err:
                log.warning("top products not refreshed: %s", err)
            next_top = time.monotonic() + TOP_PRODUCTS_SECONDS
        try:
            query.awaitTermination(HEARTBEAT_SECONDS)
        except StreamingQueryException:  # it failed: the caller restarts it or gives up
            return


def stop_query(query, mode: str, timeout: float = 20.0) -> None:
    """Stop between two micro-batches when possible, so no batch is cut short (a real-time batch
    lasts its whole checkpoint interval: it is cut, and replayed from its start offsets on restart)."""
    deadline = time.monotonic() + (timeout if mode == MICRO_BATCH else 0)
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


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
    except StartupError as err:
        log.error("cannot start: %s", err)
        return 2
    heartbeat = Heartbeat(client, options)
    # A new run: clear what an earlier process reported, so no reader takes it for this one's progress.
    heartbeat.write(**{**dict.fromkeys(live_metrics.HEARTBEAT_FIELDS), **heartbeat.fields})
    heartbeat.write(status="starting", started_at=datetime.now(UTC).isoformat())
    spark = spark_session(options, settings, partitions)
    _on_signals(stop)  # again: SparkContext replaced the SIGINT handler with its own
    spark.streams.addListener(progress_listener(heartbeat))
    relay = start_relay(options, settings, heartbeat, stop) if options.trigger == REAL_TIME else None
    restarts = Restarts(QUERY_RESTARTS, QUERY_RESTART_WINDOW)
    while True:
        query = start_query(spark, options, settings, heartbeat)
        log.info("query %s (%s, %s) writing to %s:*", query.id, options.trigger, options.interval, options.key_prefix)
        supervise(query, heartbeat, stop, stall_after=_stall_after(options))
        if stop.is_set() or query.isActive or not restarts.allow():
            break
        # Real-time Mode does not retry a failed task alone: the batch, and so the query, fails. From
        # its checkpoint the query replays the batch; the Redis values are absolute, so the replay
        # rewrites the same values (and the relay goes on).
        log.error("query failed, restarting it from its checkpoint: %s", query.exception())
        heartbeat.write(status="restarting", error=str(query.exception())[:500])
    return _finish(spark, query, heartbeat, stop, relay)


class Restarts:
    """At most `limit` restarts in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.times: list[float] = []

    def allow(self) -> bool:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < self.window]
        if len(self.times) >= self.limit:
            log.error("the query failed %d times in %.0f s: giving up", len(self.times) + 1, self.window)
            return False
        self.times.append(now)
        return True


def start_relay(options: Options, settings: Settings, heartbeat: Heartbeat, stop: threading.Event) -> Relay:
    """Real-time Mode's Redis writer, a thread of ours; a failure of it sets `stop` (see redis_relay)."""
    topic = topics.live_aggregates(options.key_prefix)  # created by check_kafka
    kafka = kafka_auth.client_config(settings, kafka_auth.SPARK)
    relay = Relay(kafka, topic, settings.redis_live_writer_url, options.key_prefix, heartbeat.rows_written)
    relay.start(on_failure=stop)
    return relay


def _stall_after(options: Options) -> float:
    """Seconds without progress that mean a stuck query (a real-time batch reports only at its end)."""
    return STALL_SECONDS + _seconds(options.interval)


def _seconds(interval: str) -> float:
    """'30 seconds', '1 minute', '500 milliseconds' -> seconds."""
    number, _, unit = interval.strip().partition(" ")
    unit = unit.strip().lower()
    scale = 0.001 if unit.startswith("milli") or unit == "ms" else 60 if unit.startswith("min") else 1
    return float(number) * (3600 if unit.startswith("hour") else scale)


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
