"""The dashboards bundle as Superset serves it: six dashboards, every chart's numbers, SQL Lab's limits.

Each chart's saved query runs through `GET /api/v1/chart/<id>/data/` and must equal its source read
directly: the spec's typical queries (verbatim, instashop/warehouse/spec_queries.py) on the DWH through the
read-only DSN, the ops tables, or the Redis `live:` keys read key by key (not with the readers of
`instashop.live.metrics` that the adapter uses). The DWH keeps being written while this runs, so each
comparison is bracketed: the source before and after the chart must agree, else it is retried.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg2
import pytest

from instashop.devstack import generator
from instashop.settings import Settings
from instashop.warehouse.spec_queries import SPEC_QUERIES
from tests.support.chart_checks import (
    Dwh,
    Expect,
    Records,
    Source,
    assert_close,
    bracketed,
    by_outcome,
    group,
    keyed,
    number,
    single,
    table_rows,
    top,
    total,
)
from tests.support.pipeline import fetch, wait_until_caught_up
from tests.support.superset import DASHBOARD_SLUGS, LiveSource, SupersetApi, bundle_charts, running_live_app

pytestmark = pytest.mark.integration


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


@pytest.fixture(scope="module")
def dwh(settings: Settings) -> Dwh:
    return Dwh(settings)


def _sql(name: str) -> Source:
    return Source(SPEC_QUERIES[name])


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
