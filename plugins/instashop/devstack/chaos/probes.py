"""Probes of the running pipeline for the soak: is a piece healthy, has a change made after t come through."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2
import redis
from confluent_kafka import Producer

from instashop import kafka_auth
from instashop.capture.connector import ConnectClient, ConnectError
from instashop.devstack import manager
from instashop.ingest.consumer import HEARTBEAT_COMPONENT
from instashop.live import metrics as live_metrics
from instashop.ops import jobs
from instashop.settings import Settings

PROBE_TOPIC = "instashop.chaos.probe"  # outside the CDC pattern: nobody consumes it
FRESH = 15.0  # seconds: a heartbeat older than this is not "healthy again"


# --- probes: each answers now, never raises (the thing it asks may be down) ---------------------------


def kafka_config(settings: Settings) -> dict[str, Any]:
    """The soak's own Kafka client (probes, poison, reading the DLQ back): the admin principal, as a
    test's set-up; the components it checks run as their own."""
    return kafka_auth.client_config(settings, kafka_auth.ADMIN)


def query_one(dsn: str, sql: str, params: tuple = ()) -> tuple | None:
    try:
        with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()
    except psycopg2.Error:
        return None


def naive_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Probes:
    settings: Settings
    redis_client: Any

    def dwh_answers(self) -> bool:
        return query_one(self.settings.dwh_dsn, "SELECT 1") == (1,)

    def dwh_path_after(self, since: float) -> bool:
        """A shop session that ended (and so committed) after `since` is in the DWH."""
        row = query_one(self.settings.dwh_readonly_dsn, 'SELECT max("timestamp") FROM customer_sessions')
        return bool(row and row[0] and row[0] > naive_utc(since))

    def consumer_healthy(self) -> bool:
        pid = jobs.consumer_job(self.settings).pid()
        row = query_one(
            self.settings.dwh_readonly_dsn,
            "SELECT extract(epoch FROM now() - heartbeat_at)::float8, details->>'pid' FROM pipeline_heartbeats "
            "WHERE component = %s",
            (HEARTBEAT_COMPONENT,),
        )
        return bool(pid and row and row[1] == str(pid) and row[0] < FRESH)

    def spark_beat(self) -> dict[str, Any]:
        """The Spark app's heartbeat if it comes from the running job and is fresh, else {}."""
        pid = jobs.spark_job(self.settings).pid()
        try:
            beat = live_metrics.read_heartbeat(self.redis_client) or {}
        except redis.RedisError:
            return {}
        fresh = beat.get("status") == "running" and (beat.get("age_seconds") or FRESH) < FRESH
        return beat if pid and fresh and beat.get("pid") == str(pid) else {}

    def spark_healthy(self) -> bool:
        return bool(self.spark_beat())

    def spark_path_after(self, since: float) -> bool:
        """The running app has processed an event that happened after `since`."""
        last = self.spark_beat().get("last_event_time")
        return bool(last) and datetime.fromisoformat(str(last)).timestamp() > since

    def stack_healthy(self) -> bool:
        """Every service of the stack runs and answers (`instashop stack status`)."""
        return all(service.healthy for service in manager.status(self.settings))

    def connector_healthy(self) -> bool:
        try:
            return ConnectClient(self.settings).state().healthy
        except ConnectError:
            return False

    def broker_accepts_produce(self) -> bool:
        delivered: list[bool] = []
        producer = Producer({**kafka_config(self.settings), "message.timeout.ms": 3000, "log_level": 0})
        producer.produce(PROBE_TOPIC, b"probe", on_delivery=lambda err, _: delivered.append(err is None))
        producer.flush(5)
        return delivered == [True]
