"""The live-metrics app's Spark session: the master, the Spark settings, the Kafka connector jars and,
under plain python, the driver JVM's launch with the loopback bind shim.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

from instashop.live.spark import task_slots
from instashop.live.spark.options import APP_NAME, MICRO_BATCH, Options, StartupError
from instashop.settings import Settings

# Every part logs as "realtime_metrics": benchmarks/realtime_latency.py parses its "batch" lines.
log = logging.getLogger("realtime_metrics")

# The connector and its own dependencies; the folder's older scala-library, slf4j, spark-tags,
# lz4, snappy and hadoop jars duplicate (older versions of) jars PySpark already ships.
KAFKA_JARS = ("spark-sql-kafka-0-10_", "spark-token-provider-kafka-0-10_", "kafka-clients-", "commons-pool2-")
# Attempts per task (local[N,F]): a task that fails (a stray connection to its streaming-shuffle
# port, a Kafka hiccup) is tried again before its failure ends the query.
TASK_ATTEMPTS = 4
# The C shim that binds the JVM's wildcard listeners to loopback (setup/spark/bind_loopback.c).
BIND_SHIM = "bind_loopback.so"


def kafka_jars(settings: Settings) -> list[str]:
    folder = settings.jars_dir / "spark-kafka"
    jars = sorted(str(j) for j in folder.glob("*.jar") if j.name.startswith(KAFKA_JARS))
    if len(jars) != len(KAFKA_JARS):
        raise StartupError(f"Kafka connector jars missing in {folder} (found {jars}): run `make setup`")
    return jars


# --- Spark --------------------------------------------------------------------------------------


def spark_session(options: Options, settings: Settings, partitions: int):
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = SparkConf().setAppName(APP_NAME).setAll(list(_conf(options, settings, os.environ["SPARK_LOCAL_IP"]).items()))
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
    # Real-time Mode holds its tasks for the whole batch (task_slots): local threads, mostly waiting
    # on Kafka, not cores; two to spare.
    return f"local[{task_slots.needed(partitions, options.shuffle_partitions) + 2},{TASK_ATTEMPTS}]"


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
