"""What the live-metrics app is asked to run (its options and triggers), and the error for a missing piece."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from instashop.live.spark.realtime_events import cdc_topics

APP_NAME = "instashop-realtime-metrics"
MICRO_BATCH, REAL_TIME = "micro-batch", "real-time"
# Bumped whenever the query's state (operators, keys) changes shape: a checkpoint written by another
# shape cannot be resumed, so the default checkpoint directory moves on with it.
STATE_VERSION = 2


class StartupError(RuntimeError):
    """Something the app needs is missing or unreachable; the message says what."""


def spark_scratch(checkpoint: Path) -> Path:
    """Where the Spark app puts its driver's temporary files: beside its checkpoint (one app per
    checkpoint), emptied at each start, so a killed driver's leftovers never pile up."""
    return checkpoint.with_name(f"{checkpoint.name}.scratch")


def _local_folder(location: str) -> Path | None:
    """The folder a checkpoint location names on this machine: a path or a file: URI. None for a
    cluster file system (s3a://, hdfs://, abfss://...), which Spark's Hadoop client resolves."""
    parts = urlsplit(location)
    if parts.scheme == "":
        return Path(location)
    return Path(parts.path) if parts.scheme == "file" else None


def scratch_for(checkpoint: str, local_root: Path) -> Path:
    """The driver's temporary files are local whatever the checkpoint's file system: beside a local
    checkpoint, else under `local_root`, named after the checkpoint's last segment."""
    folder = _local_folder(checkpoint)
    if folder is not None:
        return spark_scratch(folder)
    return local_root / f"{PurePosixPath(urlsplit(checkpoint).path).name}.scratch"


@dataclass(frozen=True)
class Options:
    master: str | None
    trigger: str
    interval: str
    watermark: str
    checkpoint: str  # a folder or a URI Spark's file systems resolve (file:, s3a://, hdfs://)
    scratch: Path  # local, see scratch_for
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
