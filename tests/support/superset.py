"""Superset as the tests drive it: its REST API as the .env admin, the dashboards bundle, and the
Live database's source (the `live:` keys in Redis, read key by key, and the Spark app that writes them).

Shared by the dashboards' integration tests and the browser tests (tests/e2e).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import requests
import yaml

from instashop.live import metrics as live_metrics
from instashop.ops import jobs
from instashop.settings import Settings

BUNDLE = Path(__file__).resolve().parents[2] / "superset" / "dashboards"
DASHBOARD_SLUGS = ("sales", "customers", "products", "sessions", "live", "pipeline-health")
TIMEOUT = 60  # a cold worker's first call loads a lot of Superset
SPARK_START_TIMEOUT = 180  # the JVM, the Kafka source and the first batch on two cores


# --- Superset's REST API ------------------------------------------------------------------------


class SupersetApi:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.superset_url
        self.session = requests.Session()
        login = {
            "username": settings.superset_admin_user,
            "password": settings.superset_admin_password,
            "provider": "db",
            "refresh": True,
        }
        response = self.session.post(f"{self.url}/api/v1/security/login", json=login, timeout=TIMEOUT)
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        # Writes need the CSRF token of this session and a Referer.
        csrf = self.get("/api/v1/security/csrf_token/")["result"]
        self.session.headers.update({"X-CSRFToken": csrf, "Referer": self.url})

    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self.session.get(f"{self.url}{path}", params=params, timeout=TIMEOUT)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.post(f"{self.url}{path}", json=body, timeout=TIMEOUT)

    def chart_records(self, chart_id: int) -> list[dict[str, Any]]:
        """The chart's saved query, run now (past the cache): its rows, after checking it had no error."""
        body = self.get(f"/api/v1/chart/{chart_id}/data/", force="true")
        [result] = body["result"]
        assert not result.get("error"), result["error"]
        assert result["status"] == "success", result
        return result["data"]

    def sqllab(self, database_id: int, sql: str) -> requests.Response:
        body = {"database_id": database_id, "sql": sql, "schema": "public", "runAsync": False}
        return self.post("/api/v1/sqllab/execute/", body)


def bundle_charts() -> dict[str, dict[str, Any]]:
    """The bundle's charts by file name (without .yaml)."""
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted((BUNDLE / "charts").glob("*.yaml"))}


# --- the Live database's source: the Redis keys -------------------------------------------------

# The README's Redis key schema, read here with plain Redis commands: the adapter reads the same keys
# through instashop.live.metrics, whose readers must not be what its charts are checked against.
WIDTH_SECONDS = {"10s": 10, "1m": 60}
WINDOW_COUNTS = ("transactions", "page_views", "searches", "cart_adds", "cart_removes", "sessions_ended", "carts")


class LiveSource:
    """The `live:` keys under the Live database's prefix, read key by key (README, "Live metrics in Redis")."""

    def __init__(self, api: SupersetApi, settings: Settings) -> None:
        listed = api.get("/api/v1/database/", q="(columns:!(id,database_name))")["result"]
        [live] = [d for d in listed if d["database_name"].startswith("InstaShop Live")]
        extra = json.loads(api.get(f"/api/v1/database/{live['id']}/connection")["result"]["extra"])
        kwargs = extra["engine_params"]["adapter_kwargs"].get("instashop_live", {})
        self.prefix: str = kwargs.get("prefix", "live")
        self.client = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def __repr__(self) -> str:
        return f"LiveSource({self.prefix!r})"

    def windows(self, width: str, span: int) -> list[dict[str, Any]]:
        """The windows of an adapter table: those of the last `span` seconds, the current one included;
        each with its counts, revenue, categories and the two rates (docs/architecture.md: conversion = transactions
        / sessions ended, abandonment = 1 - transactions / carts clamped to [0, 1], both to 4 places)."""
        step = WIDTH_SECONDS[width]
        since = int(time.time()) // step * step - span + step
        starts = sorted(int(float(s)) for s in self.client.zrangebyscore(f"{self.prefix}:index:{width}", since, "+inf"))
        windows = []
        for start in starts:
            totals = self.client.hgetall(f"{self.prefix}:totals:{width}:{start}")
            revenue = self.client.hgetall(f"{self.prefix}:category_revenue:{width}:{start}")
            if not (totals or revenue):
                continue  # expired meanwhile
            window: dict[str, Any] = {"start": start, **{f: int(totals.get(f, 0)) for f in WINDOW_COUNTS}}
            window["revenue"] = Decimal(totals.get("revenue", "0.00"))
            window["categories"] = {category: {"revenue": Decimal(r)} for category, r in revenue.items()}
            tx, ended, carts = window["transactions"], window["sessions_ended"], window["carts"]
            window["conversion_rate"] = round(tx / ended, 4) if ended else None
            window["cart_abandonment_rate"] = round(min(1.0, max(0.0, 1 - tx / carts)), 4) if carts else None
            windows.append(window)
        return windows

    def top_products(self) -> dict[str, Any] | None:
        raw = self.client.get(f"{self.prefix}:top_products:5m")
        return json.loads(raw) if raw else None

    def heartbeat(self) -> dict[str, Any] | None:
        beat: dict[str, Any] = self.client.hgetall(f"{self.prefix}:heartbeat")
        if not beat:
            return None
        updated = beat.get("updated_at")
        beat["age_seconds"] = time.time() - datetime.fromisoformat(updated).timestamp() if updated else None
        return beat


def running_live_app(settings: Settings, source: LiveSource) -> Iterator[jobs.Job | None]:
    """The Spark app writing under the Live database's prefix: the pipeline's `spark` job, started
    (and stopped afterwards) if nothing keeps the heartbeat fresh. Yields None if it runs already."""
    job = jobs.spark_job(settings)
    started = source.prefix == live_metrics.PREFIX and job.pid() is None and not _alive(source.heartbeat())
    if started:
        job.start()
    try:
        deadline = time.monotonic() + SPARK_START_TIMEOUT
        while not _alive(source.heartbeat()):
            assert time.monotonic() < deadline, f"no live Spark app under {source.prefix!r}: see {job.process.log_file}"
            time.sleep(2)
        yield job if started else None
    finally:
        if started:
            job.stop()


def _alive(beat: dict[str, Any] | None) -> bool:
    """A heartbeat of a running app, refreshed lately (a crashed app leaves `running` behind)."""
    return bool(beat) and beat["status"] == "running" and beat["age_seconds"] is not None and beat["age_seconds"] < 30
