"""What the InstaShop dashboards show: databases, datasets, charts and layouts.

Read by `build_dashboards.py`, which turns these definitions into the YAML bundle Superset imports.
Each of the first four dashboards stands on one of the spec's "Consultas Típicas" (spec/DWH_ERD.md),
taken from `instashop.warehouse.spec_queries` (the text the tests and benchmarks run) and used as a
virtual dataset without its ORDER BY and semicolon (Superset wraps the SQL in a subquery and orders
itself), so every number shown can be checked against the spec query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from instashop.warehouse.spec_queries import SPEC_QUERIES

# --- model ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    key: str
    name: str
    uri: str
    extra: dict[str, Any]
    cache_timeout: int | None = None


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    label: str | None = None
    is_dttm: bool = False
    expression: str | None = None  # a calculated column
    description: str | None = None


@dataclass(frozen=True)
class Metric:
    name: str
    expression: str
    label: str
    d3format: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Dataset:
    key: str
    database: Database
    table_name: str
    columns: tuple[Column, ...]
    metrics: tuple[Metric, ...]
    sql: str | None = None  # a virtual dataset
    main_dttm_col: str | None = None
    description: str | None = None
    schema: str | None = "public"
    cache_timeout: int | None = None


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    viz_type: str
    dataset: Dataset
    params: dict[str, Any]
    query: dict[str, Any]
    width: int = 4
    height: int = 50
    description: str | None = None
    cache_timeout: int | None = None


@dataclass(frozen=True)
class Dashboard:
    key: str
    title: str
    slug: str
    rows: tuple[tuple[Chart, ...], ...]
    intro: str = ""
    refresh_seconds: int = 0

    def charts(self) -> list[Chart]:
        return [chart for row in self.rows for chart in row]


# --- chart helpers: form data (params) and the matching query ---------------------------------------

NO_TIME_FILTER = "No filter"


def _query(
    columns: list[Any] | None = None,
    metrics: list[str] | None = None,
    orderby: list[list[Any]] | None = None,
    row_limit: int = 10_000,
    filters: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "columns": columns or [],
        "metrics": metrics,
        "orderby": orderby or [],
        "row_limit": row_limit,
        "series_limit": 0,
        "order_desc": True,
        "filters": filters or [],
        "extras": {"having": "", "where": ""},
        "applied_time_extras": {},
        "annotation_layers": [],
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
        **extra,
    }


Condition = tuple[str, str, Any]  # (column, operator, value), e.g. ("event_type", "==", "transaction")


def _filters(where: tuple[Condition, ...], time_column: str | None) -> tuple[list[dict], list[dict]]:
    """Adhoc filters (params) and the query's filters for simple conditions plus an open time range."""
    adhoc, query = [], []
    for col, op, val in where:
        adhoc.append({"clause": "WHERE", "expressionType": "SIMPLE", "subject": col, "operator": op, "comparator": val})
        query.append({"col": col, "op": op, "val": val})
    if time_column:
        adhoc.append(
            {
                "clause": "WHERE",
                "expressionType": "SIMPLE",
                "subject": time_column,
                "operator": "TEMPORAL_RANGE",
                "comparator": NO_TIME_FILTER,
            }
        )
        query.append({"col": time_column, "op": "TEMPORAL_RANGE", "val": NO_TIME_FILTER})
    return adhoc, query


def big_number(
    key: str, title: str, dataset: Dataset, metric: str, fmt: str = ",d", subtitle: str = "", **layout: Any
) -> Chart:
    params = {
        "metric": metric,
        "adhoc_filters": [],
        "header_font_size": 0.4,
        "subtitle": subtitle,
        "subheader_font_size": 0.15,
        "y_axis_format": fmt,
        "time_format": "smart_date",
    }
    return Chart(key, title, "big_number_total", dataset, params, _query(metrics=[metric], row_limit=1), **layout)


def pie(key: str, title: str, dataset: Dataset, groupby: str, metric: str, fmt: str = ",d", **layout: Any) -> Chart:
    params = {
        "groupby": [groupby],
        "metric": metric,
        "adhoc_filters": [],
        "row_limit": 100,
        "sort_by_metric": True,
        "color_scheme": "supersetColors",
        "show_labels": True,
        "label_type": "key_percent",
        "number_format": fmt,
        "show_legend": True,
        "legendType": "scroll",
        "legendOrientation": "top",
        "donut": True,
        "innerRadius": 40,
        "outerRadius": 75,
        "labels_outside": True,
    }
    query = _query(columns=[groupby], metrics=[metric], orderby=[[metric, False]], row_limit=100)
    return Chart(key, title, "pie", dataset, params, query, **layout)


def _axis(column: str, time_grain: str | None) -> dict[str, Any]:
    axis = {"columnType": "BASE_AXIS", "expressionType": "SQL", "label": column, "sqlExpression": column}
    if time_grain:
        axis["timeGrain"] = time_grain
    return axis


def bars(
    key: str,
    title: str,
    dataset: Dataset,
    x: str,
    metric: str,
    *,
    top: int | None = None,
    horizontal: bool = False,
    by_category: bool = False,
    fmt: str = ",d",
    **layout: Any,
) -> Chart:
    """Bars per category, largest first (the `top` largest only, if given), or in category order."""
    params = {
        "x_axis": x,
        "metrics": [metric],
        "groupby": [],
        "adhoc_filters": [],
        "row_limit": top or 1_000,
        "x_axis_sort": x if by_category else metric,
        # ECharts stacks horizontal categories bottom-up: ascending puts the largest on top.
        "x_axis_sort_asc": by_category or horizontal,
        "orientation": "horizontal" if horizontal else "vertical",
        "show_value": True,
        "y_axis_format": fmt,
        "truncate_metric": True,
        "show_legend": False,
        "rich_tooltip": True,
        "color_scheme": "supersetColors",
        "xAxisLabelRotation": 0 if horizontal else 45,
    }
    orderby = [] if by_category else [[metric, False]]
    query = _query(columns=[_axis(x, None)], metrics=[metric], orderby=orderby, row_limit=top or 1_000)
    return Chart(key, title, "echarts_timeseries_bar", dataset, params, query, **layout)


def over_time(
    key: str,
    title: str,
    dataset: Dataset,
    time_column: str,
    grain: str | None,
    metrics: list[str],
    *,
    series: str | None = None,
    where: tuple[Condition, ...] = (),
    kind: str = "line",
    fmt: str = ",d",
    time_format: str = "smart_date",
    **layout: Any,
) -> Chart:
    """A metric per time bucket (`grain`: P1D, PT1H, ...; None: the rows' own times), a series per `series` value."""
    adhoc, filters = _filters(where, time_column)
    groupby = [series] if series else []
    params = {
        "x_axis": time_column,
        "time_grain_sqla": grain,
        "metrics": metrics,
        "groupby": groupby,
        "adhoc_filters": adhoc,
        "row_limit": 10_000,
        "x_axis_sort_asc": True,
        "y_axis_format": fmt,
        "x_axis_time_format": time_format,
        "tooltipTimeFormat": time_format,
        "rich_tooltip": True,
        "show_legend": bool(series) or len(metrics) > 1,
        "legendOrientation": "top",
        "markerEnabled": True,
        "markerSize": 6,
        "show_value": kind == "bar",
        "stack": "Stack" if kind == "bar" and series else None,
        "color_scheme": "supersetColors",
        "truncateXAxis": True,
    }
    query = _query(
        columns=[_axis(time_column, grain), *groupby],
        metrics=metrics,
        orderby=[[metrics[0], False]],
        filters=filters,
        series_columns=groupby,
    )
    viz = "echarts_timeseries_bar" if kind == "bar" else "echarts_timeseries_line"
    return Chart(key, title, viz, dataset, params, query, **layout)


def table(
    key: str,
    title: str,
    dataset: Dataset,
    columns: list[str],
    order_by: str,
    *,
    desc: bool = True,
    limit: int = 100,
    where: tuple[Condition, ...] = (),
    formats: dict[str, str] | None = None,
    **layout: Any,
) -> Chart:
    """The dataset's rows as they are (raw mode), ordered by one column; `formats`: d3 formats by column."""
    adhoc, filters = _filters(where, None)
    params = {
        "query_mode": "raw",
        "all_columns": columns,
        "order_by_cols": [f'["{order_by}", {str(not desc).lower()}]'],
        "adhoc_filters": adhoc,
        "row_limit": limit,
        "server_pagination": False,
        "include_search": False,
        "show_cell_bars": False,
        "table_timestamp_format": "%Y-%m-%d %H:%M:%S",
        "column_config": {column: {"d3NumberFormat": fmt} for column, fmt in (formats or {}).items()},
        "allow_rearrange_columns": False,
        "color_pn": True,
    }
    query = _query(columns=columns, orderby=[[order_by, not desc]], row_limit=limit, filters=filters)
    return Chart(key, title, "table", dataset, params, query, **layout)


# --- databases ------------------------------------------------------------------------------------

DWH = Database(
    key="dwh",
    name="InstaShop DWH",
    # Host, port and password come from DWH_READONLY_DSN at import.
    uri="postgresql+psycopg2://dwh_readonly:XXXXXXXXXX@127.0.0.1:5432/dwh",
    extra={
        # Postgres cancels what runs longer than SQL Lab's own limit (SQLLAB_TIMEOUT = 60 s).
        "engine_params": {"connect_args": {"options": "-c statement_timeout=60000"}},
        "metadata_params": {},
        "metadata_cache_timeout": {"schema_cache_timeout": 600, "table_cache_timeout": 600},
        "schemas_allowed_for_file_upload": [],
        "cost_estimate_enabled": False,
        "allows_virtual_table_explore": True,
        "disable_data_preview": False,
    },
)

LIVE = Database(
    key="live",
    name="InstaShop Live (Redis)",
    # shillelagh's "safe" dialect loads only the adapters listed here, and only safe ones (a plain
    # shillelagh:// database could read local files and is refused by Superset). The Redis URL is
    # added by superset_config.DB_CONNECTION_MUTATOR, from .env.
    uri="shillelagh+safe://",
    extra={
        "engine_params": {"adapters": ["instashop_live"], "adapter_kwargs": {"instashop_live": {}}},
        "metadata_params": {},
        "metadata_cache_timeout": {},
        "schemas_allowed_for_file_upload": [],
        "allows_virtual_table_explore": True,
        "disable_data_preview": False,
    },
    cache_timeout=-1,  # never cached: Redis is the cache, and these charts must be live
)

DATABASES: list[Database] = [DWH, LIVE]

# --- datasets: the spec's typical queries, verbatim ---------------------------------------------------


def spec_dataset_sql(name: str) -> str:
    """The spec query `name` as a virtual dataset's SQL: the text of SPEC_QUERIES (the one the tests
    and benchmarks run) without its ORDER BY and semicolon, as Superset wraps the SQL in a subquery
    and orders itself, and without trailing blanks. Rows and columns are those of the spec query."""
    lines = [line.rstrip() for line in SPEC_QUERIES[name].strip().removesuffix(";").splitlines()]
    if lines[-1].startswith("ORDER BY"):
        lines.pop()
    return "\n".join(lines)


SALES_DAILY = Dataset(
    key="sales_daily",
    database=DWH,
    table_name="spec_metricas_de_transacciones",
    description="Spec query 'Métricas de Transacciones': transactions per day (UTC).",
    sql=spec_dataset_sql("transacciones"),
    main_dttm_col="fecha",
    columns=(
        Column("fecha", "DATE", "Day", is_dttm=True),
        Column("total_transacciones", "BIGINT", "Transactions"),
        Column("ingresos_totales", "NUMERIC", "Revenue"),
        Column("ticket_promedio", "NUMERIC", "Average ticket"),
    ),
    metrics=(
        Metric("transactions", "SUM(total_transacciones)", "Transactions", ",d"),
        Metric("revenue", "SUM(ingresos_totales)", "Revenue", ",.2f"),
        Metric(
            "average_ticket",
            "SUM(ingresos_totales) / NULLIF(SUM(total_transacciones), 0)",
            "Average ticket",
            ",.2f",
            "Revenue over transactions: per day it equals the spec's ticket_promedio.",
        ),
    ),
)

CUSTOMER_ACTIVITY = Dataset(
    key="customer_activity",
    database=DWH,
    table_name="spec_analisis_de_clientes",
    description="Spec query 'Análisis de Clientes': events, transactions and spend per customer.",
    sql=spec_dataset_sql("clientes"),
    columns=(
        Column("customer_id", "INTEGER", "Customer id"),
        Column("customer_name", "VARCHAR(255)", "Customer"),
        Column("total_eventos", "BIGINT", "Events"),
        Column("transacciones", "BIGINT", "Transactions"),
        Column("gasto_total", "NUMERIC", "Spend"),
        # Names are not unique: charts label customers with their id.
        Column("customer", "VARCHAR", "Customer (id)", expression="customer_name || ' #' || customer_id"),
    ),
    metrics=(
        Metric("customers", "COUNT(*)", "Customers", ",d"),
        Metric("buyers", "COUNT(CASE WHEN transacciones > 0 THEN 1 END)", "Customers who bought", ",d"),
        Metric("spend", "SUM(gasto_total)", "Spend", ",.2f"),
        Metric(
            "spend_per_buyer",
            "SUM(gasto_total) / NULLIF(COUNT(CASE WHEN transacciones > 0 THEN 1 END), 0)",
            "Spend per buyer",
            ",.2f",
        ),
    ),
)

PRODUCT_PERFORMANCE = Dataset(
    key="product_performance",
    database=DWH,
    table_name="spec_performance_de_productos",
    description="Spec query 'Performance de Productos': items sold, revenue and average price per product.",
    sql=spec_dataset_sql("productos"),
    columns=(
        Column("product_id", "INTEGER", "Product id"),
        Column("product_name", "VARCHAR(255)", "Product"),
        Column("category", "VARCHAR(100)", "Category"),
        Column("veces_vendido", "BIGINT", "Times sold"),
        Column("ingresos_generados", "NUMERIC", "Revenue"),
        Column("precio_promedio", "NUMERIC", "Average price"),
        Column("product", "VARCHAR", "Product (id)", expression="product_name || ' #' || product_id"),
    ),
    metrics=(
        Metric("products", "COUNT(*)", "Products sold", ",d"),
        Metric("times_sold", "SUM(veces_vendido)", "Items sold", ",d"),
        Metric("revenue", "SUM(ingresos_generados)", "Revenue", ",.2f"),
        Metric("average_price", "SUM(ingresos_generados) / NULLIF(SUM(veces_vendido), 0)", "Average price", ",.2f"),
    ),
)

_OUTCOME_LABEL = "COALESCE(outcome, 'in progress')"

SESSION_OUTCOMES = Dataset(
    key="session_outcomes",
    database=DWH,
    table_name="spec_analisis_de_sesiones",
    description="Spec query 'Análisis de Sesiones': sessions and average duration (s) per outcome.",
    sql=spec_dataset_sql("sesiones"),
    columns=(
        Column("outcome", "VARCHAR(50)", "Outcome (raw)"),
        Column("total_sesiones", "BIGINT", "Sessions"),
        Column("duracion_promedio", "NUMERIC", "Average duration (s)"),
        Column("outcome_label", "VARCHAR", "Outcome", expression=_OUTCOME_LABEL),
    ),
    metrics=(
        Metric("sessions", "SUM(total_sesiones)", "Sessions", ",d"),
        Metric(
            "average_duration",
            "SUM(total_sesiones * duracion_promedio) / NULLIF(SUM(total_sesiones), 0)",
            "Average duration (s)",
            ",.1f",
            "Weighted by sessions: per outcome it equals the spec's duracion_promedio.",
        ),
        Metric(
            "conversion_rate",
            "SUM(CASE WHEN outcome = 'conversion' THEN total_sesiones ELSE 0 END)::numeric"
            " / NULLIF(SUM(total_sesiones), 0)",
            "Conversion rate",
            ".1%",
        ),
        Metric(
            "abandonment_rate",
            "SUM(CASE WHEN outcome = 'cart_abandonment' THEN total_sesiones ELSE 0 END)::numeric"
            " / NULLIF(SUM(total_sesiones), 0)",
            "Cart abandonment rate",
            ".1%",
        ),
    ),
)

# --- datasets: the tables themselves (trends, operations) ----------------------------------------------

_SESSION_DURATION = "EXTRACT(EPOCH FROM (\"timestamp\" - (session_data->>'start_time')::timestamp))"

CUSTOMER_SESSIONS = Dataset(
    key="customer_sessions",
    database=DWH,
    table_name="customer_sessions",
    description="One row per shop session; outcome once it ended.",
    main_dttm_col="timestamp",
    columns=(
        Column("session_id", "VARCHAR(100)", "Session"),
        Column("customer_id", "BIGINT", "Customer id"),
        Column("session_data", "JSONB", "Session data"),
        Column("outcome", "VARCHAR(50)", "Outcome (raw)"),
        Column("timestamp", "TIMESTAMP WITHOUT TIME ZONE", "Time (UTC)", is_dttm=True),
        Column("outcome_label", "VARCHAR", "Outcome", expression=_OUTCOME_LABEL),
        Column("duration_s", "NUMERIC", "Duration (s)", expression=_SESSION_DURATION),
    ),
    metrics=(
        Metric("sessions", "COUNT(*)", "Sessions", ",d"),
        Metric("average_duration", f"AVG({_SESSION_DURATION})", "Average duration (s)", ",.1f"),
    ),
)

REALTIME_EVENTS = Dataset(
    key="realtime_events",
    database=DWH,
    table_name="realtime_events",
    description="Every business event of the shop, one row each (spec table RealtimeEvents).",
    main_dttm_col="timestamp",
    columns=(
        Column("id", "INTEGER", "Id"),
        Column("event_type", "VARCHAR(50)", "Event type"),
        Column("timestamp", "TIMESTAMP WITHOUT TIME ZONE", "Time (UTC)", is_dttm=True),
        Column("customer_id", "INTEGER", "Customer id"),
        Column("customer_name", "VARCHAR(255)", "Customer"),
        Column("product_id", "INTEGER", "Product id"),
        Column("product_name", "VARCHAR(255)", "Product"),
        Column("category", "VARCHAR(100)", "Category"),
        Column("amount", "NUMERIC(12, 2)", "Amount"),
        Column("session_id", "VARCHAR(255)", "Session"),
        Column("raw_data", "JSONB", "Raw data"),
        Column("processed_at", "TIMESTAMP WITHOUT TIME ZONE", "Processed at (UTC)", is_dttm=True),
        Column("source", "VARCHAR(50)", "Source"),
    ),
    metrics=(
        Metric("events", "COUNT(*)", "Events", ",d"),
        Metric("amount", "SUM(amount)", "Amount", ",.2f"),
        Metric(
            "seconds_since_last_event",
            "EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - MAX(processed_at))",
            "Seconds since the last event reached the DWH",
            ",.0f",
        ),
    ),
)

PIPELINE_HEARTBEATS = Dataset(
    key="pipeline_heartbeats",
    database=DWH,
    table_name="pipeline_heartbeats",
    description="Liveness of the long-running processes: one row per component, updated in place.",
    main_dttm_col="heartbeat_at",
    columns=(
        Column("component", "VARCHAR(50)", "Component"),
        Column("heartbeat_at", "TIMESTAMP WITH TIME ZONE", "Last heartbeat", is_dttm=True),
        Column("details", "JSONB", "Details"),
        Column("age_s", "NUMERIC", "Seconds since", expression="ROUND(EXTRACT(EPOCH FROM now() - heartbeat_at))"),
    ),
    metrics=(Metric("components", "COUNT(*)", "Components", ",d"),),
)

DEAD_LETTERS = Dataset(
    key="dead_letters",
    database=DWH,
    table_name="dead_letters",
    description="Messages the consumer could not turn into rows, with the reason.",
    main_dttm_col="received_at",
    columns=(
        Column("id", "BIGINT", "Id"),
        Column("received_at", "TIMESTAMP WITH TIME ZONE", "Received at", is_dttm=True),
        Column("topic", "VARCHAR(255)", "Topic"),
        Column("kafka_partition", "INTEGER", "Partition"),
        Column("kafka_offset", "BIGINT", "Offset"),
        Column("message_key", "TEXT", "Key"),
        Column("value_bytes", "INTEGER", "Value bytes"),
        Column("reason", "TEXT", "Reason"),
    ),
    metrics=(Metric("dead_letters", "COUNT(*)", "Dead letters", ",d"),),
)

SUPERVISOR_CHECKS = Dataset(
    key="pipeline_health_checks",
    database=DWH,
    table_name="pipeline_health_checks",
    description="Every check of the stream_supervisor DAG: component, status seen, action taken.",
    main_dttm_col="checked_at",
    columns=(
        Column("id", "BIGINT", "Id"),
        Column("checked_at", "TIMESTAMP WITH TIME ZONE", "Checked at", is_dttm=True),
        Column("component", "VARCHAR(50)", "Component"),
        Column("status", "VARCHAR(20)", "Status"),
        Column("action", "VARCHAR(50)", "Action"),
        Column("details", "JSONB", "Details"),
        Column("run_id", "VARCHAR(250)", "DAG run"),
    ),
    metrics=(
        Metric("checks", "COUNT(*)", "Checks", ",d"),
        Metric("actions", "COUNT(CASE WHEN action <> 'none' THEN 1 END)", "Actions taken", ",d"),
    ),
)

SUPERVISOR_LATEST = Dataset(
    key="pipeline_health_latest",
    database=DWH,
    table_name="pipeline_health_latest",
    description="The stream_supervisor's latest check of each component.",
    sql="""SELECT DISTINCT ON (component)
    component, status, action, checked_at,
    ROUND(EXTRACT(EPOCH FROM now() - checked_at)) AS age_s,
    details
FROM pipeline_health_checks
ORDER BY component, checked_at DESC, id DESC""",
    main_dttm_col="checked_at",
    columns=(
        Column("component", "VARCHAR(50)", "Component"),
        Column("status", "VARCHAR(20)", "Status"),
        Column("action", "VARCHAR(50)", "Last action"),
        Column("checked_at", "TIMESTAMP WITH TIME ZONE", "Checked at", is_dttm=True),
        Column("age_s", "NUMERIC", "Seconds since"),
        Column("details", "JSONB", "Details"),
    ),
    metrics=(
        Metric("components", "COUNT(*)", "Components", ",d"),
        Metric("unhealthy", "COUNT(CASE WHEN status <> 'healthy' THEN 1 END)", "Not healthy now", ",d"),
    ),
)

# --- datasets: the Redis live metrics (tables of superset/instashop_live) ------------------------------

_LIVE_WINDOW_COLUMNS = (
    Column("window_start", "TIMESTAMP", "Window start (UTC)", is_dttm=True),
    Column("window_end", "TIMESTAMP", "Window end (UTC)", is_dttm=True),
    Column("transactions", "INTEGER", "Transactions"),
    Column("revenue", "REAL", "Revenue"),
    Column("avg_ticket", "REAL", "Average ticket"),
    Column("buyers", "INTEGER", "Buyers (approx.)"),
    Column("active_customers", "INTEGER", "Active customers (approx.)"),
    Column("page_views", "INTEGER", "Page views"),
    Column("searches", "INTEGER", "Searches"),
    Column("cart_adds", "INTEGER", "Cart adds"),
    Column("cart_removes", "INTEGER", "Cart removes"),
    Column("sessions_ended", "INTEGER", "Sessions ended"),
    Column("carts", "INTEGER", "Carts"),
    Column("malformed", "INTEGER", "Malformed records"),
    Column("conversion_rate", "REAL", "Conversion rate"),
    Column("cart_abandonment_rate", "REAL", "Cart abandonment rate"),
)
# The live rates of a span, derived like instashop.live.metrics.derive does for one window.
_LIVE_WINDOW_METRICS = (
    Metric("transactions", "SUM(transactions)", "Transactions", ",d"),
    Metric("revenue", "SUM(revenue)", "Revenue", ",.2f"),
    Metric("conversion_rate", "SUM(transactions) * 1.0 / NULLIF(SUM(sessions_ended), 0)", "Conversion rate", ".1%"),
    Metric(
        "cart_abandonment_rate",
        "MAX(0.0, MIN(1.0, 1 - SUM(transactions) * 1.0 / NULLIF(SUM(carts), 0)))",
        "Cart abandonment rate",
        ".1%",
    ),
    Metric("window_conversion_rate", "MAX(conversion_rate)", "Conversion rate", ".1%", "Per window: one row each."),
    Metric("window_abandonment_rate", "MAX(cart_abandonment_rate)", "Cart abandonment rate", ".1%", "Per window."),
)

LIVE_WINDOWS_10S = Dataset(
    key="live_windows_10s",
    database=LIVE,
    table_name="live_windows_10s",
    schema=None,
    description="10-second windows of the Spark app, the last 5 minutes (Redis live:*).",
    main_dttm_col="window_start",
    columns=_LIVE_WINDOW_COLUMNS,
    metrics=_LIVE_WINDOW_METRICS,
)

LIVE_WINDOWS_1M = Dataset(
    key="live_windows_1m",
    database=LIVE,
    table_name="live_windows_1m",
    schema=None,
    description="1-minute windows of the Spark app, the last 60 minutes (Redis live:*).",
    main_dttm_col="window_start",
    columns=_LIVE_WINDOW_COLUMNS,
    metrics=_LIVE_WINDOW_METRICS,
)

LIVE_CATEGORIES = Dataset(
    key="live_categories_10s",
    database=LIVE,
    table_name="live_categories_10s",
    schema=None,
    description="Revenue and units per category of each 10-second window, the last 5 minutes.",
    main_dttm_col="window_start",
    columns=(
        Column("window_start", "TIMESTAMP", "Window start (UTC)", is_dttm=True),
        Column("category", "TEXT", "Category"),
        Column("revenue", "REAL", "Revenue"),
        Column("units", "INTEGER", "Units"),
    ),
    metrics=(
        Metric("revenue", "SUM(revenue)", "Revenue", ",.2f"),
        Metric("units", "SUM(units)", "Units", ",d"),
    ),
)

LIVE_TOP_PRODUCTS = Dataset(
    key="live_top_products",
    database=LIVE,
    table_name="live_top_products",
    schema=None,
    description="The Spark app's ranking of products by revenue over the last 5 minutes.",
    columns=(
        Column("rank", "INTEGER", "Rank"),
        Column("product_id", "INTEGER", "Product id"),
        Column("name", "TEXT", "Product"),
        Column("category", "TEXT", "Category"),
        Column("product", "TEXT", "Product (id)"),
        Column("revenue", "REAL", "Revenue"),
        Column("units", "INTEGER", "Units"),
        Column("ranking_from", "TIMESTAMP", "From (UTC)", is_dttm=True),
        Column("ranking_until", "TIMESTAMP", "Until (UTC)", is_dttm=True),
    ),
    metrics=(Metric("revenue", "SUM(revenue)", "Revenue", ",.2f"),),
)

LIVE_HEARTBEAT = Dataset(
    key="live_heartbeat",
    database=LIVE,
    table_name="live_heartbeat",
    schema=None,
    description="The Spark live-metrics app's heartbeat (no row: no heartbeat for 10 minutes).",
    columns=(
        Column("status", "TEXT", "Status"),
        Column("mode", "TEXT", "Mode"),
        Column("pid", "INTEGER", "Pid"),
        Column("batch_id", "INTEGER", "Batch"),
        Column("input_rows_per_second", "REAL", "Input rows/s"),
        Column("processed_rows_per_second", "REAL", "Processed rows/s"),
        Column("batch_duration_ms", "REAL", "Batch duration (ms)"),
        Column("last_event_time", "TIMESTAMP", "Last event (UTC)", is_dttm=True),
        Column("watermark", "TIMESTAMP", "Watermark (UTC)", is_dttm=True),
        Column("started_at", "TIMESTAMP", "Started (UTC)", is_dttm=True),
        Column("updated_at", "TIMESTAMP", "Updated (UTC)", is_dttm=True),
        Column("age_seconds", "REAL", "Seconds since"),
        Column("error", "TEXT", "Error"),
    ),
    metrics=(Metric("age_seconds", "MAX(age_seconds)", "Seconds since the last heartbeat", ",.0f"),),
)

# --- dashboards -----------------------------------------------------------------------------------


def _intro(text: str) -> str:
    return text.strip() + "\n\nTimes are UTC. Data: the DWH (`dwh`), read through the read-only role."


SALES = Dashboard(
    key="sales",
    title="1 · Sales",
    slug="sales",
    intro=_intro("""
### Sales — spec query *Métricas de Transacciones*
Transactions per day: count, revenue and average ticket (`event_type = 'transaction'`)."""),
    rows=(
        (
            big_number("revenue_total", "Revenue", SALES_DAILY, "revenue", ",.2f", "all days", width=4, height=25),
            big_number(
                "transactions_total",
                "Transactions",
                SALES_DAILY,
                "transactions",
                subtitle="all days",
                width=4,
                height=25,
            ),
            big_number(
                "average_ticket",
                "Average ticket",
                SALES_DAILY,
                "average_ticket",
                ",.2f",
                "all days",
                width=4,
                height=25,
            ),
        ),
        (
            over_time(
                "revenue_per_day",
                "Revenue per day",
                SALES_DAILY,
                "fecha",
                "P1D",
                ["revenue"],
                kind="bar",
                fmt=",.2f",
                width=4,
            ),
            over_time(
                "transactions_per_day",
                "Transactions per day",
                SALES_DAILY,
                "fecha",
                "P1D",
                ["transactions"],
                kind="bar",
                width=4,
            ),
            over_time(
                "ticket_per_day",
                "Average ticket per day",
                SALES_DAILY,
                "fecha",
                "P1D",
                ["average_ticket"],
                fmt=",.2f",
                width=4,
            ),
        ),
        (
            over_time(
                "revenue_per_hour",
                "Revenue per hour",
                REALTIME_EVENTS,
                "timestamp",
                "PT1H",
                ["amount"],
                where=(("event_type", "==", "transaction"),),
                kind="bar",
                fmt=",.2f",
                width=6,
            ),
            table(
                "daily_table",
                "Métricas de Transacciones (per day)",
                SALES_DAILY,
                ["fecha", "total_transacciones", "ingresos_totales", "ticket_promedio"],
                "fecha",
                formats={"total_transacciones": ",d", "ingresos_totales": ",.2f", "ticket_promedio": ",.2f"},
                width=6,
            ),
        ),
    ),
)

CUSTOMERS = Dashboard(
    key="customers",
    title="2 · Customers",
    slug="customers",
    intro=_intro("""
### Customers — spec query *Análisis de Clientes*
Per customer: events of every type, transactions and total spend."""),
    rows=(
        (
            big_number("customers", "Customers with activity", CUSTOMER_ACTIVITY, "customers", width=4, height=25),
            big_number("buyers", "Customers who bought", CUSTOMER_ACTIVITY, "buyers", width=4, height=25),
            big_number(
                "spend_per_buyer", "Spend per buyer", CUSTOMER_ACTIVITY, "spend_per_buyer", ",.2f", width=4, height=25
            ),
        ),
        (
            bars(
                "top_spenders",
                "Top 10 customers by spend",
                CUSTOMER_ACTIVITY,
                "customer",
                "spend",
                top=10,
                horizontal=True,
                fmt=",.2f",
                width=6,
            ),
            bars(
                "purchase_frequency",
                "Customers by number of transactions",
                CUSTOMER_ACTIVITY,
                "transacciones",
                "customers",
                by_category=True,
                width=6,
            ),
        ),
        (
            table(
                "top_customers",
                "Análisis de Clientes (top 50 by spend)",
                CUSTOMER_ACTIVITY,
                ["customer_id", "customer_name", "total_eventos", "transacciones", "gasto_total"],
                "gasto_total",
                limit=50,
                formats={"total_eventos": ",d", "gasto_total": ",.2f"},
                width=12,
                height=60,
            ),
        ),
    ),
)

PRODUCTS = Dashboard(
    key="products",
    title="3 · Products",
    slug="products",
    intro=_intro("""
### Products — spec query *Performance de Productos*
Per product and category: items sold, revenue and average price (`event_type = 'transaction_item'`)."""),
    rows=(
        (
            pie(
                "revenue_by_category",
                "Revenue by category",
                PRODUCT_PERFORMANCE,
                "category",
                "revenue",
                ",.2f",
                width=4,
            ),
            bars("items_by_category", "Items sold by category", PRODUCT_PERFORMANCE, "category", "times_sold", width=4),
            bars(
                "price_by_category",
                "Average price by category",
                PRODUCT_PERFORMANCE,
                "category",
                "average_price",
                fmt=",.2f",
                width=4,
            ),
        ),
        (
            bars(
                "top_products",
                "Top 10 products by revenue",
                PRODUCT_PERFORMANCE,
                "product",
                "revenue",
                top=10,
                horizontal=True,
                fmt=",.2f",
                width=6,
            ),
            table(
                "products_table",
                "Performance de Productos",
                PRODUCT_PERFORMANCE,
                ["product_id", "product_name", "category", "veces_vendido", "ingresos_generados", "precio_promedio"],
                "ingresos_generados",
                formats={"veces_vendido": ",d", "ingresos_generados": ",.2f", "precio_promedio": ",.2f"},
                width=6,
            ),
        ),
    ),
)

SESSIONS = Dashboard(
    key="sessions",
    title="4 · Sessions",
    slug="sessions",
    intro=_intro("""
### Sessions — spec query *Análisis de Sesiones*
Outcome of each session (conversion, cart abandonment, bounce; *in progress* until it ends), its
average duration (s), and the trend per hour from `customer_sessions`."""),
    rows=(
        (
            pie("outcome_mix", "Session outcomes", SESSION_OUTCOMES, "outcome_label", "sessions", width=4),
            bars(
                "duration_by_outcome",
                "Average duration by outcome (s)",
                SESSION_OUTCOMES,
                "outcome_label",
                "average_duration",
                fmt=",.1f",
                width=4,
            ),
            big_number(
                "conversion_rate",
                "Conversion rate",
                SESSION_OUTCOMES,
                "conversion_rate",
                ".1%",
                "of all sessions",
                width=2,
                height=50,
            ),
            big_number(
                "abandonment_rate",
                "Cart abandonment rate",
                SESSION_OUTCOMES,
                "abandonment_rate",
                ".1%",
                "of all sessions",
                width=2,
                height=50,
            ),
        ),
        (
            over_time(
                "sessions_per_hour",
                "Sessions per hour by outcome",
                CUSTOMER_SESSIONS,
                "timestamp",
                "PT1H",
                ["sessions"],
                series="outcome_label",
                kind="bar",
                width=6,
            ),
            over_time(
                "duration_per_hour",
                "Average session duration per hour (s)",
                CUSTOMER_SESSIONS,
                "timestamp",
                "PT1H",
                ["average_duration"],
                fmt=",.1f",
                width=6,
            ),
        ),
    ),
)

PIPELINE_HEALTH = Dashboard(
    key="pipeline_health",
    title="6 · Pipeline health",
    slug="pipeline-health",
    refresh_seconds=60,
    intro=_intro("""
### Pipeline health
What the `stream_supervisor` DAG saw and did (table `pipeline_health_checks`), the heartbeats of the
long-running processes, the consumer's dead letters, and how fresh the DWH is."""),
    rows=(
        (
            big_number(
                "unhealthy",
                "Components not healthy now",
                SUPERVISOR_LATEST,
                "unhealthy",
                subtitle="at the supervisor's last check",
                width=3,
                height=30,
            ),
            big_number(
                "actions",
                "Supervisor actions taken",
                SUPERVISOR_CHECKS,
                "actions",
                subtitle="starts, restarts, registrations",
                width=3,
                height=30,
            ),
            big_number(
                "freshness",
                "Seconds since the last event reached the DWH",
                REALTIME_EVENTS,
                "seconds_since_last_event",
                ",.0f",
                "processed_at of the newest event",
                width=3,
                height=30,
            ),
            big_number(
                "dead_letters_total",
                "Dead letters",
                DEAD_LETTERS,
                "dead_letters",
                subtitle="since the start",
                width=3,
                height=30,
            ),
        ),
        (
            table(
                "supervisor_latest",
                "Latest supervisor check per component",
                SUPERVISOR_LATEST,
                ["component", "status", "action", "checked_at", "age_s", "details"],
                "component",
                desc=False,
                width=6,
            ),
            over_time(
                "checks_per_hour",
                "Supervisor checks per hour by status",
                SUPERVISOR_CHECKS,
                "checked_at",
                "PT1H",
                ["checks"],
                series="status",
                kind="bar",
                width=6,
            ),
        ),
        (
            table(
                "supervisor_actions",
                "Latest supervisor actions",
                SUPERVISOR_CHECKS,
                ["checked_at", "component", "status", "action", "details"],
                "checked_at",
                limit=20,
                where=(("action", "!=", "none"),),
                width=6,
            ),
            table(
                "heartbeats",
                "Heartbeats",
                PIPELINE_HEARTBEATS,
                ["component", "heartbeat_at", "age_s", "details"],
                "heartbeat_at",
                width=6,
            ),
        ),
        (
            bars(
                "dead_letters_by_topic",
                "Dead letters by topic",
                DEAD_LETTERS,
                "topic",
                "dead_letters",
                horizontal=True,
                width=4,
            ),
            table(
                "latest_dead_letters",
                "Latest dead letters",
                DEAD_LETTERS,
                ["received_at", "topic", "kafka_partition", "kafka_offset", "value_bytes", "reason"],
                "received_at",
                limit=50,
                width=8,
            ),
        ),
    ),
)

_CLOCK = "%H:%M:%S"  # 10-second points need seconds; smart_date would print ":30s"

LIVE_DASHBOARD = Dashboard(
    key="live",
    title="5 · Live",
    slug="live",
    refresh_seconds=5,
    intro="""### Live — the Spark app's metrics in Redis
Last 5 minutes in 10-second windows (the newest still filling), by event time, refreshed every 5 s (UTC).
Rates: conversion = transactions / sessions ended; cart abandonment = 1 - transactions / carts.""",
    rows=(
        (
            big_number("revenue", "Revenue, last 5 min", LIVE_WINDOWS_10S, "revenue", ",.2f", width=3, height=25),
            big_number(
                "transactions", "Transactions, last 5 min", LIVE_WINDOWS_10S, "transactions", width=2, height=25
            ),
            big_number(
                "conversion_rate",
                "Conversion rate, last 5 min",
                LIVE_WINDOWS_10S,
                "conversion_rate",
                ".1%",
                width=2,
                height=25,
            ),
            big_number(
                "abandonment_rate",
                "Cart abandonment, last 5 min",
                LIVE_WINDOWS_10S,
                "cart_abandonment_rate",
                ".1%",
                width=2,
                height=25,
            ),
            big_number(
                "heartbeat_age",
                "Spark app: seconds since heartbeat",
                LIVE_HEARTBEAT,
                "age_seconds",
                ",.0f",
                "empty: no heartbeat for 10 min",
                width=3,
                height=25,
            ),
        ),
        (
            over_time(
                "revenue_per_10s",
                "Revenue per 10 s",
                LIVE_WINDOWS_10S,
                "window_start",
                None,
                ["revenue"],
                fmt=",.2f",
                time_format=_CLOCK,
                width=6,
            ),
            over_time(
                "transactions_per_10s",
                "Transactions per 10 s",
                LIVE_WINDOWS_10S,
                "window_start",
                None,
                ["transactions"],
                kind="bar",
                time_format=_CLOCK,
                width=6,
            ),
        ),
        (
            bars(
                "top_products",
                "Top products, last 5 min",
                LIVE_TOP_PRODUCTS,
                "product",
                "revenue",
                top=10,
                horizontal=True,
                fmt=",.2f",
                width=6,
            ),
            pie(
                "category_mix",
                "Category mix (revenue), last 5 min",
                LIVE_CATEGORIES,
                "category",
                "revenue",
                ",.2f",
                width=6,
            ),
        ),
        (
            over_time(
                "rates_per_minute",
                "Conversion and cart abandonment per minute, last hour",
                LIVE_WINDOWS_1M,
                "window_start",
                None,
                ["window_conversion_rate", "window_abandonment_rate"],
                fmt=".1%",
                time_format="%H:%M",
                width=8,
            ),
            table(
                "heartbeat",
                "Spark app heartbeat",
                LIVE_HEARTBEAT,
                ["status", "batch_id", "processed_rows_per_second", "updated_at", "age_seconds"],
                "updated_at",
                limit=10,
                formats={"processed_rows_per_second": ",.1f", "age_seconds": ",.0f"},
                width=4,
            ),
        ),
    ),
)

DASHBOARDS: list[Dashboard] = [SALES, CUSTOMERS, PRODUCTS, SESSIONS, LIVE_DASHBOARD, PIPELINE_HEALTH]
