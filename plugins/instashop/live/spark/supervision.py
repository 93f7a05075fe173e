"""Watching the running query: the heartbeat in Redis, progress, stall detection, restarts and stopping."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime

import redis

from instashop.live import metrics as live_metrics
from instashop.live.spark.options import MICRO_BATCH, Options

# Every part logs as "realtime_metrics": benchmarks/realtime_latency.py parses its "batch" lines.
log = logging.getLogger("realtime_metrics")

HEARTBEAT_SECONDS = 1.0
# A batch this long is stuck, not slow (catch-up batches are bounded by --max-offsets-per-trigger).
STALL_SECONDS = 180.0
TOP_PRODUCTS_SECONDS = 2.0
# A failed query is started again from its checkpoint in this process, up to this many times in
# QUERY_RESTART_WINDOW seconds; past that the app exits and the supervisor takes over.
QUERY_RESTARTS = 5
QUERY_RESTART_WINDOW = 600.0


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


def stall_timeout(options: Options) -> float:
    """Seconds without progress that mean a stuck query (a real-time batch reports only at its end)."""
    return STALL_SECONDS + _interval_seconds(options.interval)


def _interval_seconds(interval: str) -> float:
    """'30 seconds', '1 minute', '500 milliseconds' -> seconds."""
    number, _, unit = interval.strip().partition(" ")
    unit = unit.strip().lower()
    scale = 0.001 if unit.startswith("milli") or unit == "ms" else 60 if unit.startswith("min") else 1
    return float(number) * (3600 if unit.startswith("hour") else scale)
