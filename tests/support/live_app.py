"""The live-metrics Spark app as the tests run it: LiveApp, an instance of its own (key prefix
live:it:<id>, its own checkpoint, no UI) that disturbs nobody's live:* keys, started, read and cleaned
up; and wait_for_batches, which follows any instance's batches by its heartbeat.

Used by the live-metrics, listen-address and stream_supervisor tests.
"""

import shutil
import time
import uuid
from datetime import datetime

import redis
from confluent_kafka.admin import AdminClient

from instashop.capture import topics
from instashop.kafka_auth import ADMIN, client_config
from instashop.live import metrics as live_metrics
from instashop.live.spark.app import spark_scratch
from instashop.ops.jobs import spark_job
from instashop.ops.process import tail, wait_until

START_TIMEOUT = 600  # a cold Spark driver on a busy 2-core box (seen taking over 360 s at load 35)
# A Real-time query holds a task, and a streaming-shuffle server, per Kafka partition it reads (18:
# five CDC topics and the enriched items, 3 partitions each) and per shuffle partition.
SHUFFLE_SERVERS_AT_LEAST = 18


class LiveApp:
    """One instance of plugins/instashop/live/spark/app.py and the Redis keys it writes."""

    def __init__(self, settings, checkpoint, trigger: str, *extra_args: str) -> None:
        run = uuid.uuid4().hex[:8]
        self.prefix = f"{live_metrics.PREFIX}:it:{run}"
        args = ["--key-prefix", self.prefix, "--checkpoint", str(checkpoint), "--no-ui", "--watermark", "15 minutes"]
        args += extra_args
        args += ["--trigger", trigger]
        if trigger == "real-time":  # a checkpoint every 10 s (not 5 min): restarts and snapshots come quickly
            args += ["--interval", "10 seconds"]
        # State snapshots every other batch, so a restart loads one (not only changelogs) as in production.
        args += ["--conf", "spark.sql.streaming.stateStore.minDeltasForSnapshot=2"]
        args += ["--conf", "spark.sql.streaming.stateStore.maintenanceInterval=2s"]
        self.job = spark_job(settings, *args, name=f"spark-it-{run}")
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.kafka = client_config(settings, ADMIN)  # set-up and clean-up; the app runs as `spark`
        self.checkpoint = checkpoint
        self.trigger = trigger

    def start(self) -> None:
        """Start and wait for the first batch: from then on every new record is read."""
        started = time.time()
        self.job.start()
        ready = wait_until(lambda: self._batch_after(started) or self.job.pid() is None, START_TIMEOUT, 1)
        assert ready and self.job.pid(), f"the app did not start:\n{tail(self.job.process.log_file)}"

    def _batch_after(self, moment: float) -> bool:
        beat = self.heartbeat()
        return bool(beat and beat.get("batch_id") and beat.get("pid") == str(self.job.pid()) and _after(beat, moment))

    def scratch_files(self) -> set[str]:
        """The running driver's temporary files: its state stores' RocksDB copies and the native
        libraries its JVM unpacked (named afresh by every start)."""
        scratch = spark_scratch(self.checkpoint)
        return {p.name for p in [*scratch.glob("local/*/StateStoreId*"), *scratch.glob("tmp/librocksdbjni*.so")]}

    def heartbeat(self) -> dict | None:
        return live_metrics.read_heartbeat(self.redis, self.prefix)

    def window(self, width: str, start: int) -> dict:
        return live_metrics.read_window(self.redis, width, start, self.prefix) or {"transactions": 0, "categories": {}}

    def cleanup(self) -> None:
        self.job.stop()
        for key in self.redis.scan_iter(f"{self.prefix}:*", count=1000):
            self.redis.delete(key)
        AdminClient(self.kafka).delete_topics([topics.live_aggregates(self.prefix)])
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        self.job.process.log_file.unlink(missing_ok=True)


def _after(beat: dict, moment: float) -> bool:
    return datetime.fromisoformat(beat["updated_at"]).timestamp() >= moment


def wait_for_batches(client, prefix: str, pid: int | None, after: int = -1, timeout: float = 300) -> int:
    """The batch id the app reports once it runs (as pid) past batch `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beat = live_metrics.read_heartbeat(client, prefix) or {}
        if beat.get("pid") == str(pid) and beat.get("status") == "running" and int(beat.get("batch_id") or -1) > after:
            return int(beat["batch_id"])
        time.sleep(2)
    raise AssertionError(f"the Spark app (pid {pid}) ran no batch past {after} within {timeout:.0f}s: {beat}")
