"""What the live-metrics app is asked to run (its options and triggers), and the error for a missing piece."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
