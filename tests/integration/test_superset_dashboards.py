"""The dashboards bundle as Superset serves it: six dashboards, every chart's numbers, SQL Lab's limits.

Each chart's saved query runs through `GET /api/v1/chart/<id>/data/` and must equal its source read
directly: the spec's typical queries (verbatim, instashop/warehouse/spec_queries.py) on the DWH through the
read-only DSN, the ops tables, or the Redis `live:` keys read key by key (not with the readers of
`instashop.live.metrics` that the adapter uses). The DWH keeps being written while this runs, so each
comparison is bracketed: the source before and after the chart must agree, else it is retried.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
import requests
import yaml

from instashop.devstack import generator
from instashop.live import metrics as live_metrics
from instashop.ops import jobs
from instashop.settings import Settings
from instashop.warehouse.spec_queries import SPEC_QUERIES
from tests.support.pipeline import fetch, wait_until_caught_up

pytestmark = pytest.mark.integration

BUNDLE = Path(__file__).resolve().parents[2] / "superset" / "dashboards"
DASHBOARD_SLUGS = ("sales", "customers", "products", "sessions", "live", "pipeline-health")
TIMEOUT = 60  # a cold worker's first call loads a lot of Superset
ATTEMPTS = 10  # brackets tried before a comparison gives up on a DWH that keeps changing


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


@pytest.fixture(scope="module")
def api(settings: Settings) -> SupersetApi:
    return SupersetApi(settings)


@pytest.fixture(scope="module")
def dashboards(api: SupersetApi) -> dict[str, dict[str, Any]]:
    listed = api.get("/api/v1/dashboard/", q="(columns:!(id,slug,dashboard_title),page_size:100)")["result"]
    return {d["slug"]: d for d in listed if d["slug"] in DASHBOARD_SLUGS}


@pytest.fixture(scope="module")
def chart_ids(api: SupersetApi) -> dict[str, int]:
    listed = api.get("/api/v1/chart/", q="(columns:!(id,uuid),page_size:1000)")["result"]
    return {c["uuid"]: c["id"] for c in listed}


@pytest.fixture(scope="module")
def shop_data(settings: Settings, cdc_pipeline) -> None:
    """Some shop activity in the DWH (a fresh stack has none): a short generator run, caught up."""
    if not fetch(settings.dwh_readonly_dsn, SPEC_QUERIES["transacciones"]):
        options = generator.GeneratorConfig(rate=0, sessions=150, seed=61, customers=120, products=40)
        generator.run(settings.oltp_dsn, options, console=None)
    wait_until_caught_up(settings)


# --- what each chart must show --------------------------------------------------------------------

Rows = list[tuple]
Records = list[dict[str, Any]]


class Dwh:
    """Queries on the DWH through the read-only DSN (its repr, shown in failures, holds no password)."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.dwh_readonly_dsn

    def __repr__(self) -> str:
        return "Dwh(DWH_READONLY_DSN)"

    def rows(self, sql: str) -> Rows:
        return fetch(self._dsn, sql)


@pytest.fixture(scope="module")
def dwh(settings: Settings) -> Dwh:
    return Dwh(settings)


@dataclass(frozen=True)
class Source:
    """Where a chart's truth comes from: a query on the DWH run by the test."""

    sql: str

    def read(self, dwh: Dwh) -> Rows:
        return dwh.rows(self.sql)


@dataclass(frozen=True)
class Expect:
    source: Source
    # (chart records, source rows) -> None, raising AssertionError on a difference.
    verify: Callable[[Records, Rows], None]
    # Sources whose answer depends on now() cannot be bracketed; their checks carry tolerances.
    volatile: bool = False


def _sql(name: str) -> Source:
    return Source(SPEC_QUERIES[name])


def number(value: Any) -> Any:
    """Chart JSON and psycopg2 values on one footing: numbers as float, times as epoch ms (UTC)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.timestamp() * 1000
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000
    return value


def assert_close(got: Any, want: Any, where: str = "", rel: float = 1e-9, abs_: float = 1e-6) -> None:
    """Deep equality, numbers within a rounding tolerance (Superset sends them as JSON floats)."""
    got, want = number(got), number(want)
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{where}: keys {got} != {want}"
        for key in want:
            assert_close(got[key], want[key], f"{where}[{key!r}]", rel, abs_)
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]", rel, abs_)
    elif isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=rel, abs_tol=abs_), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def total(index: int, divide_by: int | None = None) -> Callable[[Rows], float]:
    """Sum of a column of the source, or the ratio of two column sums."""

    def compute(rows: Rows) -> float:
        value = sum(Decimal(row[index] or 0) for row in rows)
        if divide_by is None:
            return float(value)
        return float(value / sum(Decimal(row[divide_by]) for row in rows))

    return compute


def single(label: str, compute: Callable[[Rows], Any]) -> Callable[[Records, Rows], None]:
    """A Big Number: one record, one value."""

    def verify(records: Records, rows: Rows) -> None:
        assert_close(records, [{label: compute(rows)}], label)

    return verify


def keyed(key: str, label: str, compute: Callable[[Rows], dict[Any, Any]]) -> Callable[[Records, Rows], None]:
    """One record per key (a category, a day); order does not matter."""

    def verify(records: Records, rows: Rows) -> None:
        got = {number(r[key]): r[label] for r in records}
        want = {number(k): v for k, v in compute(rows).items()}
        assert len(got) == len(records), f"{key} repeats in {records}"
        assert_close(got, want, label)

    return verify


def group(rows: Rows, key: Callable[[tuple], Any], value: Callable[[Iterable[tuple]], Any]) -> dict[Any, Any]:
    groups: dict[Any, list[tuple]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return {k: value(members) for k, members in groups.items()}


def top(key: Callable[[dict], Any], label: str, spec_key: int, spec_value: int, n: int) -> Callable[..., None]:
    """The n largest by a value: the same values as the source's n largest (ties may swap rows)."""

    def verify(records: Records, rows: Rows) -> None:
        want_values = sorted((float(r[spec_value]) for r in rows), reverse=True)[:n]
        assert_close([r[label] for r in records], want_values, f"top {n} {label}")
        by_key = {row[spec_key]: float(row[spec_value]) for row in rows}
        for record in records:
            assert_close(record[label], by_key[key(record)], f"{label} of {key(record)}")

    return verify


def table_rows(columns: list[str], n: int, order_index: int, desc: bool = True) -> Callable[[Records, Rows], None]:
    """A raw table: its rows are source rows, in the source's order of one column, n of them."""

    def verify(records: Records, rows: Rows) -> None:
        ordered = sorted(rows, key=lambda r: number(r[order_index]), reverse=desc)[:n]
        assert_close([record[columns[order_index]] for record in records], [r[order_index] for r in ordered])
        source = Counter(tuple(number(v) for v in row) for row in rows)
        for record in records:
            got = tuple(number(record[c]) for c in columns)
            assert any(_close_tuple(got, row) for row in source), f"row {got} is not in the source"

    return verify


def _close_tuple(got: tuple, want: tuple) -> bool:
    try:
        assert_close(got, want)
    except AssertionError:
        return False
    return True


def by_outcome(rows: Rows, index: int) -> dict[str, Any]:
    return {(row[0] or "in progress"): row[index] for row in rows}


HOURLY_REVENUE = Source("""
SELECT date_trunc('hour', "timestamp"), SUM(amount) FROM realtime_events
WHERE event_type = 'transaction' GROUP BY 1
""")
HOURLY_SESSIONS = Source("""
SELECT date_trunc('hour', "timestamp"), COALESCE(outcome, 'in progress'), COUNT(*)
FROM customer_sessions GROUP BY 1, 2
""")
HOURLY_DURATION = Source("""
SELECT date_trunc('hour', "timestamp"),
       AVG(EXTRACT(EPOCH FROM ("timestamp" - (session_data->>'start_time')::timestamp)))
FROM customer_sessions GROUP BY 1
""")
LATEST_CHECKS = Source("""
SELECT DISTINCT ON (component) component, status, action, checked_at
FROM pipeline_health_checks ORDER BY component, checked_at DESC, id DESC
""")
CHECKS = Source("SELECT date_trunc('hour', checked_at), status, action FROM pipeline_health_checks")
ACTIONS = Source(
    "SELECT checked_at FROM pipeline_health_checks WHERE action <> 'none' ORDER BY checked_at DESC LIMIT 20"
)
HEARTBEATS = Source("SELECT component, heartbeat_at FROM pipeline_heartbeats")
DEAD_LETTERS = Source("SELECT received_at, topic, kafka_partition, kafka_offset, value_bytes, reason FROM dead_letters")
FRESHNESS = Source("SELECT EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - MAX(processed_at)) FROM realtime_events")

_SALES, _CUSTOMERS, _PRODUCTS, _SESSIONS = (_sql(n) for n in ("transacciones", "clientes", "productos", "sesiones"))

# Chart file (superset/dashboards/charts/<key>.yaml) -> what it must show.
DWH_EXPECTATIONS: dict[str, Expect] = {
    # Sales: spec "Métricas de Transacciones" (fecha, total_transacciones, ingresos_totales, ticket_promedio)
    "sales_revenue_total": Expect(_SALES, single("revenue", total(2))),
    "sales_transactions_total": Expect(_SALES, single("transactions", total(1))),
    "sales_average_ticket": Expect(_SALES, single("average_ticket", total(2, divide_by=1))),
    "sales_revenue_per_day": Expect(_SALES, keyed("fecha", "revenue", lambda rows: {r[0]: r[2] for r in rows})),
    "sales_transactions_per_day": Expect(
        _SALES, keyed("fecha", "transactions", lambda rows: {r[0]: r[1] for r in rows})
    ),
    "sales_ticket_per_day": Expect(_SALES, keyed("fecha", "average_ticket", lambda rows: {r[0]: r[3] for r in rows})),
    "sales_daily_table": Expect(
        _SALES, table_rows(["fecha", "total_transacciones", "ingresos_totales", "ticket_promedio"], 100, 0)
    ),
    "sales_revenue_per_hour": Expect(HOURLY_REVENUE, keyed("timestamp", "amount", dict)),
    # Customers: spec "Análisis de Clientes" (customer_id, customer_name, total_eventos, transacciones, gasto_total)
    "customers_customers": Expect(_CUSTOMERS, single("customers", len)),
    "customers_buyers": Expect(_CUSTOMERS, single("buyers", lambda rows: sum(1 for r in rows if r[3] > 0))),
    "customers_spend_per_buyer": Expect(
        _CUSTOMERS,
        single("spend_per_buyer", lambda rows: total(4)(rows) / sum(1 for r in rows if r[3] > 0)),
    ),
    "customers_top_spenders": Expect(
        _CUSTOMERS, top(lambda r: int(r["customer"].rsplit("#", 1)[1]), "spend", 0, 4, 10)
    ),
    "customers_purchase_frequency": Expect(
        _CUSTOMERS, keyed("transacciones", "customers", lambda rows: Counter(r[3] for r in rows))
    ),
    "customers_top_customers": Expect(
        _CUSTOMERS,
        table_rows(["customer_id", "customer_name", "total_eventos", "transacciones", "gasto_total"], 50, 4),
    ),
    # Products: spec "Performance de Productos"
    # (product_id, product_name, category, veces_vendido, ingresos_generados, precio_promedio)
    "products_revenue_by_category": Expect(
        _PRODUCTS, keyed("category", "revenue", lambda rows: group(rows, lambda r: r[2], total(4)))
    ),
    "products_items_by_category": Expect(
        _PRODUCTS, keyed("category", "times_sold", lambda rows: group(rows, lambda r: r[2], total(3)))
    ),
    "products_price_by_category": Expect(
        _PRODUCTS, keyed("category", "average_price", lambda rows: group(rows, lambda r: r[2], total(4, 3)))
    ),
    "products_top_products": Expect(_PRODUCTS, top(lambda r: int(r["product"].rsplit("#", 1)[1]), "revenue", 0, 4, 10)),
    "products_products_table": Expect(
        _PRODUCTS,
        table_rows(
            ["product_id", "product_name", "category", "veces_vendido", "ingresos_generados", "precio_promedio"],
            100,
            4,
        ),
    ),
    # Sessions: spec "Análisis de Sesiones" (outcome, total_sesiones, duracion_promedio)
    "sessions_outcome_mix": Expect(_SESSIONS, keyed("outcome_label", "sessions", lambda rows: by_outcome(rows, 1))),
    "sessions_duration_by_outcome": Expect(
        _SESSIONS, keyed("outcome_label", "average_duration", lambda rows: by_outcome(rows, 2))
    ),
    "sessions_conversion_rate": Expect(
        _SESSIONS, single("conversion_rate", lambda rows: by_outcome(rows, 1).get("conversion", 0) / total(1)(rows))
    ),
    "sessions_abandonment_rate": Expect(
        _SESSIONS,
        single("abandonment_rate", lambda rows: by_outcome(rows, 1).get("cart_abandonment", 0) / total(1)(rows)),
    ),
    "sessions_sessions_per_hour": Expect(
        HOURLY_SESSIONS,
        lambda records, rows: assert_close(
            {(number(r["timestamp"]), r["outcome_label"]): r["sessions"] for r in records},
            {(number(r[0]), r[1]): r[2] for r in rows},
        ),
    ),
    "sessions_duration_per_hour": Expect(HOURLY_DURATION, keyed("timestamp", "average_duration", dict)),
    # Pipeline health: the supervisor's checks, heartbeats, dead letters, freshness
    "pipeline_health_unhealthy": Expect(
        LATEST_CHECKS, single("unhealthy", lambda rows: sum(1 for r in rows if r[1] != "healthy"))
    ),
    "pipeline_health_actions": Expect(CHECKS, single("actions", lambda rows: sum(1 for r in rows if r[2] != "none"))),
    "pipeline_health_supervisor_latest": Expect(
        LATEST_CHECKS,
        lambda records, rows: assert_close(
            [[r["component"], r["status"], r["action"], r["checked_at"]] for r in records], [list(r) for r in rows]
        ),
    ),
    "pipeline_health_checks_per_hour": Expect(
        CHECKS,
        lambda records, rows: assert_close(
            {(number(r["checked_at"]), r["status"]): r["checks"] for r in records},
            dict(Counter((number(r[0]), r[1]) for r in rows)),
        ),
    ),
    "pipeline_health_supervisor_actions": Expect(
        ACTIONS, lambda records, rows: assert_close([r["checked_at"] for r in records], [r[0] for r in rows])
    ),
    "pipeline_health_heartbeats": Expect(
        HEARTBEATS,
        lambda records, rows: assert_close(
            sorted((r["component"], number(r["heartbeat_at"])) for r in records),
            sorted((r[0], number(r[1])) for r in rows),
            abs_=1.0,
        ),
    ),
    "pipeline_health_dead_letters_total": Expect(DEAD_LETTERS, single("dead_letters", len)),
    "pipeline_health_dead_letters_by_topic": Expect(
        DEAD_LETTERS, keyed("topic", "dead_letters", lambda rows: Counter(r[1] for r in rows))
    ),
    "pipeline_health_latest_dead_letters": Expect(
        DEAD_LETTERS,
        table_rows(["received_at", "topic", "kafka_partition", "kafka_offset", "value_bytes", "reason"], 50, 0),
    ),
    "pipeline_health_freshness": Expect(
        FRESHNESS,
        lambda records, rows: assert_close(
            records, [{"seconds_since_last_event": rows[0][0]}], "freshness", rel=0, abs_=15.0
        ),
        volatile=True,
    ),
}


def bundle_charts() -> dict[str, dict[str, Any]]:
    """The bundle's charts by file name (without .yaml)."""
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted((BUNDLE / "charts").glob("*.yaml"))}


def bracketed(read: Callable[[], Any], chart: Callable[[], Records], volatile: bool = False) -> tuple[Records, Any]:
    """The chart's records with the source they must equal, read while the source held still."""
    for _ in range(ATTEMPTS):
        before = read()
        records = chart()
        if volatile:
            return records, before
        if read() == before:
            return records, before
        time.sleep(0.3)
    raise AssertionError(f"the source kept changing over {ATTEMPTS} tries")


# --- tests ----------------------------------------------------------------------------------------


def test_the_six_dashboards_are_listed(api, dashboards):
    assert set(dashboards) == set(DASHBOARD_SLUGS)
    for slug, listed in dashboards.items():
        dashboard = api.get(f"/api/v1/dashboard/{listed['id']}")["result"]
        charts = api.get(f"/api/v1/dashboard/{listed['id']}/charts")["result"]
        assert dashboard["published"], slug
        assert len(charts) >= 4, f"{slug} has {len(charts)} charts"


def test_live_dashboard_refreshes_itself_within_10_seconds(api, dashboards):
    dashboard = api.get(f"/api/v1/dashboard/{dashboards['live']['id']}")["result"]
    refresh = json.loads(dashboard["json_metadata"])["refresh_frequency"]
    assert 0 < refresh <= 10


def test_every_chart_of_the_bundle_is_checked():
    assert set(bundle_charts()) == set(DWH_EXPECTATIONS) | set(LIVE_EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(DWH_EXPECTATIONS))
def test_dwh_chart_equals_its_source(name, api, dwh, chart_ids, shop_data):
    chart = bundle_charts()[name]
    chart_id = chart_ids[chart["uuid"]]
    expect = DWH_EXPECTATIONS[name]
    records, rows = bracketed(lambda: expect.source.read(dwh), lambda: api.chart_records(chart_id), expect.volatile)
    if rows:  # ops tables (dead letters, supervisor checks) may still be empty on a fresh stack
        assert records, f"{chart['slice_name']}: no rows, while its source has {len(rows)}"
    expect.verify(records, rows)


# --- the Live dashboard: the Redis keys ---------------------------------------------------------------

# Spans of the adapter's tables (superset/instashop_live): width, seconds up to now.
SPAN_10S, SPAN_1M = ("10s", 300), ("1m", 3600)
SPARK_START_TIMEOUT = 180  # the JVM, the Kafka source and the first batch on two cores


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


@dataclass(frozen=True)
class LiveExpect:
    read: Callable[[LiveSource], Any]
    verify: Callable[[Records, Any], None]


def _windows_10s(live: LiveSource) -> list[dict[str, Any]]:
    return live.windows(*SPAN_10S)


def _sum(windows: list[dict[str, Any]], field: str) -> Any:
    return sum(w[field] for w in windows) if windows else None


def _ratio(windows: list[dict[str, Any]], numerator: str, denominator: str) -> float | None:
    below = _sum(windows, denominator)
    return _sum(windows, numerator) / below if below else None


def _abandonment(windows: list[dict[str, Any]]) -> float | None:
    ordered = _ratio(windows, "transactions", "carts")
    return None if ordered is None else min(1.0, max(0.0, 1 - ordered))


def _per_window(field: str) -> Callable[[list[dict[str, Any]]], dict[float, Any]]:
    return lambda windows: {w["start"] * 1000.0: w[field] for w in windows}


def _categories(windows: list[dict[str, Any]]) -> dict[str, Decimal]:
    revenue: dict[str, Decimal] = {}
    for w in windows:
        for category, values in w["categories"].items():
            revenue[category] = revenue.get(category, Decimal(0)) + values["revenue"]
    return revenue


def _top_products(records: Records, ranking: dict[str, Any] | None) -> None:
    products = (ranking or {}).get("products", [])
    want = [{"product": f"{p['name']} #{p['product_id']}", "revenue": float(Decimal(p["revenue"]))} for p in products]

    def ranked(rows: Records) -> Records:  # equal revenues may come in any order
        return sorted(rows, key=lambda r: (-r["revenue"], r["product"]))

    assert_close(ranked(records), ranked(want), "top products")


def _heartbeat(live: LiveSource) -> dict[str, Any] | None:
    """The heartbeat without its age (which grows by the second), so that brackets can hold."""
    beat = live.heartbeat()
    return beat and {k: v for k, v in beat.items() if k != "age_seconds"}


def _age_now(beat: dict[str, Any]) -> float:
    return time.time() - datetime.fromisoformat(beat["updated_at"]).timestamp()


def _heartbeat_table(records: Records, beat: dict[str, Any] | None) -> None:
    assert beat is not None and len(records) == 1, records
    [got] = records
    batch_id = int(beat["batch_id"]) if beat["batch_id"] else None  # empty until the first batch
    assert (got["status"], got["batch_id"]) == (beat["status"], batch_id)
    assert_close(got["updated_at"], datetime.fromisoformat(beat["updated_at"]), "updated_at", abs_=1.0)
    assert_close(got["age_seconds"], _age_now(beat), "age_seconds", rel=0, abs_=5.0)


def _live_single(label: str, compute: Callable[[list[dict[str, Any]]], Any]) -> LiveExpect:
    return LiveExpect(_windows_10s, lambda records, windows: assert_close(records, [{label: compute(windows)}], label))


def _live_keyed(key: str, label: str, compute: Callable[[Any], dict], read: Callable = _windows_10s) -> LiveExpect:
    return LiveExpect(
        read, lambda records, source: assert_close({number(r[key]): r[label] for r in records}, compute(source), label)
    )


LIVE_EXPECTATIONS: dict[str, LiveExpect] = {
    "live_revenue": _live_single("revenue", lambda ws: _sum(ws, "revenue")),
    "live_transactions": _live_single("transactions", lambda ws: _sum(ws, "transactions")),
    "live_conversion_rate": _live_single("conversion_rate", lambda ws: _ratio(ws, "transactions", "sessions_ended")),
    "live_abandonment_rate": _live_single("cart_abandonment_rate", _abandonment),
    "live_revenue_per_10s": _live_keyed("window_start", "revenue", _per_window("revenue")),
    "live_transactions_per_10s": _live_keyed("window_start", "transactions", _per_window("transactions")),
    "live_category_mix": _live_keyed("category", "revenue", _categories),
    "live_top_products": LiveExpect(LiveSource.top_products, _top_products),
    "live_rates_per_minute": LiveExpect(
        lambda live: live.windows(*SPAN_1M),
        lambda records, windows: assert_close(
            {number(r["window_start"]): (r["window_conversion_rate"], r["window_abandonment_rate"]) for r in records},
            {w["start"] * 1000.0: (w["conversion_rate"], w["cart_abandonment_rate"]) for w in windows},
            "rates per minute",
        ),
    ),
    "live_heartbeat_age": LiveExpect(
        _heartbeat, lambda records, beat: assert_close(records, [{"age_seconds": _age_now(beat)}], rel=0, abs_=5.0)
    ),
    "live_heartbeat": LiveExpect(_heartbeat, _heartbeat_table),
}


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


def fresh_live_metrics(settings: Settings, source: LiveSource) -> None:
    """Shop activity now, and the Spark app's windows and ranking for it in Redis."""
    options = generator.GeneratorConfig(rate=0, sessions=80, seed=int(time.time()) % 10_000)
    generator.run(settings.oltp_dsn, options, console=None)
    deadline = time.monotonic() + 120
    while not _has_every_metric(source):
        assert time.monotonic() < deadline, "the Spark app wrote no window for the new activity within 120 s"
        time.sleep(2)


def _has_every_metric(source: LiveSource) -> bool:
    """Windows with categories (items come through the consumer, a little later) and a ranking."""
    windows = _windows_10s(source)
    return any(w["categories"] for w in windows) and bool((source.top_products() or {}).get("products"))


@pytest.fixture(scope="module")
def live(api: SupersetApi, settings: Settings, cdc_pipeline) -> Iterator[LiveSource]:
    """The Live database's Redis keys, with fresh windows made by the running Spark app."""
    source = LiveSource(api, settings)
    for _ in running_live_app(settings, source):
        fresh_live_metrics(settings, source)
        yield source


@pytest.mark.parametrize("name", sorted(LIVE_EXPECTATIONS))
def test_live_chart_equals_the_redis_keys(name, api, live, chart_ids):
    chart = bundle_charts()[name]
    expect = LIVE_EXPECTATIONS[name]
    chart_id = chart_ids[chart["uuid"]]
    records, source = bracketed(lambda: expect.read(live), lambda: api.chart_records(chart_id))
    assert records, f"{chart['slice_name']}: no rows"
    expect.verify(records, source)


# --- SQL Lab ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dwh_database_id(api: SupersetApi) -> int:
    listed = api.get("/api/v1/database/", q="(columns:!(id,database_name,allow_dml,expose_in_sqllab))")["result"]
    [dwh] = [d for d in listed if d["database_name"] == "InstaShop DWH"]
    assert dwh["expose_in_sqllab"] and not dwh["allow_dml"]
    return dwh["id"]


def test_sqllab_runs_a_select_on_realtime_events(api, dwh, dwh_database_id, shop_data):
    sql = "SELECT event_type, COUNT(*) AS n FROM realtime_events GROUP BY event_type"
    before = dict(dwh.rows(sql))
    response = api.sqllab(dwh_database_id, sql)
    after = dict(dwh.rows(sql))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "success", result
    got = {row["event_type"]: row["n"] for row in result["data"]}
    assert got.keys() == after.keys() and got["transaction"] > 0
    assert all(before[k] <= got[k] <= after[k] for k in got), (before, got, after)


# Rows a write would touch, so that a write that went through shows: SQL Lab's refusals are checked
# on them (they are not dead letters of the pipeline; the writer's role puts them there and takes them
# away again).
SEEDED = "sqllab-seed"
_SEEDED_ROWS = "SELECT id, reason FROM dead_letters WHERE topic = 'sqllab-seed' ORDER BY id"
# Why a write is refused: Superset's own DML check (the database does not allow DML), or PostgreSQL's
# (the role's transactions are read-only; it has no write grant either).
REFUSALS = (
    "read-only transaction",
    "permission denied",
    "Only SELECT statements are allowed",
    "does not allow for DDL/DML",
)


@pytest.fixture(scope="module")
def seeded(settings: Settings) -> Iterator[list[tuple]]:
    rows = [(SEEDED, 0, n, 1, f"seeded for SQL Lab's write test {n}") for n in range(3)]
    with closing(psycopg2.connect(settings.dwh_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dead_letters WHERE topic = %s", (SEEDED,))
        cur.executemany(
            "INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, value_bytes, reason)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
    yield fetch(settings.dwh_readonly_dsn, _SEEDED_ROWS)
    with closing(psycopg2.connect(settings.dwh_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dead_letters WHERE topic = %s", (SEEDED,))


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, value_bytes, reason)"
        " VALUES ('sqllab', 0, 0, 0, 'must be refused')",
        f"DELETE FROM dead_letters WHERE topic = '{SEEDED}'",
        f"UPDATE dead_letters SET reason = 'overwritten' WHERE topic = '{SEEDED}'",
        f"SELECT 1; DELETE FROM dead_letters WHERE topic = '{SEEDED}'",
        f"WITH gone AS (DELETE FROM dead_letters WHERE topic = '{SEEDED}' RETURNING id) SELECT * FROM gone",
        f"WITH changed AS (UPDATE dead_letters SET reason = 'x' WHERE topic = '{SEEDED}' RETURNING id) SELECT 1",
    ],
)
def test_sqllab_refuses_writes_and_says_why(api, dwh, dwh_database_id, seeded, sql):
    assert len(seeded) == 3
    response = api.sqllab(dwh_database_id, sql)
    assert dwh.rows(_SEEDED_ROWS) == seeded, f"the rows a write would touch changed: {response.text[:500]}"
    assert dwh.rows("SELECT count(*) FROM dead_letters WHERE topic = 'sqllab'") == [(0,)]
    assert response.status_code >= 400 or response.json().get("status") != "success", response.text
    assert any(reason in response.text for reason in REFUSALS), f"refused without saying why: {response.text[:500]}"
