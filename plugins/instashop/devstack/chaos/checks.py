"""The soak's final checks: with the generator stopped and everything drained, the DWH must equal the OLTP
and Redis must equal the DWH.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from datetime import UTC, datetime
from datetime import time as clock_time

import psycopg2
import redis
from confluent_kafka import KafkaException

from instashop import kafka_auth
from instashop.capture.connector import CDC_TOPIC_PATTERN
from instashop.devstack.chaos.plan import ChaosConfig, live_differences
from instashop.devstack.chaos.probes import naive_utc
from instashop.devstack.chaos.report import Report
from instashop.ingest.consumer import ConsumerOptions
from instashop.live import metrics as live_metrics
from instashop.settings import Settings
from instashop.warehouse import reconciliation

log = logging.getLogger(__name__)


class FinalChecks:
    """After the load stopped and everything drained: the DWH against the OLTP, Redis against the DWH."""

    def __init__(
        self, settings: Settings, config: ChaosConfig, redis_client: redis.Redis, report: Report, started: float
    ) -> None:
        self.settings, self.config, self.redis, self.report = settings, config, redis_client, report
        self.started = started

    def check_dwh(self) -> None:
        """Wait for the DWH to catch up with the OLTP, then compare every (event type, day) of the soak."""
        day = datetime.fromtimestamp(self.started, UTC).date()
        mismatches: list[reconciliation.Mismatch] = []
        cells = 0
        deadline = time.time() + self.config.drain_timeout
        while True:
            window = reconciliation.Window(datetime.combine(day, clock_time.min), naive_utc(time.time() + 60))
            try:
                cells, mismatches = self._compare_dwh(window)
            except psycopg2.Error as err:
                log.warning("reconciliation query failed: %s", err)
                cells, mismatches = 0, []
            if cells and not mismatches and self._consumer_lag() == 0:
                break
            if time.time() > deadline:
                break
            time.sleep(5)
        self.report.dwh |= {
            **window.as_dict(),
            "cells": cells,
            "diff": [m.describe() for m in mismatches],
            "consumer_lag": self._consumer_lag(),
        }
        log.info("DWH vs OLTP: %d cells compared, %d differ", cells, len(mismatches))

    def _compare_dwh(self, window: reconciliation.Window) -> tuple[int, list[reconciliation.Mismatch]]:
        with (
            closing(psycopg2.connect(self.settings.oltp_dsn)) as oltp,
            closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as dwh,
        ):
            expected = reconciliation.totals(oltp, reconciliation.OLTP_QUERY, window, aware=True)
            actual = reconciliation.totals(dwh, reconciliation.DWH_QUERY, window, aware=False)
        zero = reconciliation.ZERO
        self.report.dwh["cells_detail"] = [
            {
                "type": kind,
                "day": day.isoformat(),
                "oltp_rows": expected.get((kind, day), zero).rows,
                "dwh_rows": actual.get((kind, day), zero).rows,
                "oltp_amount": str(expected.get((kind, day), zero).amount),
                "dwh_amount": str(actual.get((kind, day), zero).amount),
            }
            for kind, day in sorted(expected.keys() | actual.keys())
        ]
        return len(expected.keys() | actual.keys()), reconciliation.diff(expected, actual)

    def _consumer_lag(self) -> int | None:
        from confluent_kafka.admin import AdminClient

        from instashop.ops.kafka_lag import consumer_group_lag

        try:
            # As the supervisor reads it: the airflow principal may describe the consumer's group.
            admin = AdminClient(kafka_auth.client_config(self.settings, kafka_auth.AIRFLOW))
            return consumer_group_lag(admin, ConsumerOptions().group_id, CDC_TOPIC_PATTERN).total
        except KafkaException:
            return None

    def check_live(self, load_stopped: float) -> None:
        """Redis vs DWH for every minute of the soak (the Spark app ran before it began: all are complete)."""
        start = _ceil_minute(self.started)
        window = reconciliation.Window(naive_utc(start), naive_utc(_ceil_minute(load_stopped)))
        mismatches: list[reconciliation.LiveMismatch] = []
        deadline = time.time() + self.config.drain_timeout
        while True:
            try:
                mismatches = self._compare_live(window)
            except (psycopg2.Error, redis.RedisError) as err:
                log.warning("live metrics comparison failed: %s", err)
            if not mismatches or time.time() > deadline:
                break
            time.sleep(5)
        minutes = int((window.end - window.start).total_seconds() // 60)
        self.report.live = {**window.as_dict(), "windows": minutes, "diff": [m.describe() for m in mismatches]}
        log.info("Redis vs DWH: %d minutes compared, %d figures differ", minutes, len(mismatches))

    def _compare_live(self, window: reconciliation.Window) -> list[reconciliation.LiveMismatch]:
        with closing(psycopg2.connect(self.settings.dwh_readonly_dsn)) as dwh:
            in_dwh = reconciliation.live_totals_from_dwh(dwh, window)
        in_redis = {
            w["start"]: {f: w[f] for f in reconciliation.LIVE_FIELDS}
            for w in live_metrics.read_windows(self.redis, reconciliation.LIVE_WIDTH, window.start, window.end)
        }
        return live_differences(in_redis, in_dwh, window)


def _ceil_minute(epoch: float) -> float:
    return -(-epoch // 60) * 60
