"""Daily rollups of realtime_events and customer_sessions for the dashboards (sql/dwh/006_daily_rollups.sql).

The spec's typical queries aggregate every event and session kept: on 10M events they take seconds.
The rollups hold one row per day (and customer, product or session outcome); `DASHBOARD_QUERIES`
answer the spec's four questions from them with the same columns and values (the customers' one from
`customer_totals`, all-time totals kept from the daily rows), `RANGE_QUERIES` for a range of days.

A refresh recomputes whole UTC days from realtime_events (a day reads only its own partition) and
customer_sessions (by "timestamp": a session's end, or its start while open): per day one
transaction deletes the day's rows and inserts them again, so readers see either the old or the new
day, and a rerun changes nothing. Rollup days before the oldest row left in their source (events
dropped by retention) are removed, then customer_totals is recomputed. Scheduled runs refresh
yesterday and today, where late changes land (payments settling or refunded, clean-up deletes); a
backfill or a late replay of older days needs a refresh of its range by hand.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from psycopg2 import sql

from instashop.warehouse.day_ranges import DayRange, parse_range

log = logging.getLogger(__name__)

# Each rollup's rows for one day, from its source's rows in [%(start)s, %(end)s) (for events: one partition).
_DAY_ROWS = {
    "daily_sales": """
        INSERT INTO daily_sales (day, transactions, revenue, amounts)
        SELECT "timestamp"::date, count(*), sum(amount), count(amount)
        FROM realtime_events
        WHERE event_type = 'transaction' AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
        GROUP BY "timestamp"::date""",
    "daily_customer_activity": """
        INSERT INTO daily_customer_activity (day, customer_id, customer_name, events, transactions, spend)
        SELECT "timestamp"::date, customer_id, customer_name, count(*),
               count(*) FILTER (WHERE event_type = 'transaction'),
               sum(CASE WHEN event_type = 'transaction' THEN amount ELSE 0 END)
        FROM realtime_events
        WHERE customer_id IS NOT NULL AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
        GROUP BY "timestamp"::date, customer_id, customer_name""",
    "daily_product_sales": """
        INSERT INTO daily_product_sales (day, product_id, product_name, category, items, revenue, amounts)
        SELECT "timestamp"::date, product_id, product_name, category, count(*), sum(amount), count(amount)
        FROM realtime_events
        WHERE event_type = 'transaction_item' AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
        GROUP BY "timestamp"::date, product_id, product_name, category""",
    "daily_session_outcomes": """
        INSERT INTO daily_session_outcomes (day, outcome, sessions, duration_sum, durations)
        SELECT "timestamp"::date, outcome, count(*), sum(duration), count(duration)
        FROM (SELECT "timestamp", outcome,
                     extract(epoch FROM ("timestamp" - (session_data->>'start_time')::timestamp)) AS duration
              FROM customer_sessions
              WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s) s
        GROUP BY "timestamp"::date, outcome""",
}
TABLES = tuple(_DAY_ROWS)
# What each rollup summarizes: its days end where the source's oldest row is.
SOURCES = {table: "customer_sessions" if table == "daily_session_outcomes" else "realtime_events" for table in TABLES}

# The spec's "Consultas Típicas" answered from the rollups: same columns, same values (averages are
# sum / count, as AVG computes them). DASHBOARD_QUERIES cover all days, like the spec's;
# RANGE_QUERIES the days %(first)s..%(last)s (inclusive), like the spec's with a time filter.
_DAY_RANGE = "day BETWEEN %(first)s AND %(last)s"
RANGE_QUERIES = {
    "transacciones": f"""
        SELECT day AS fecha, transactions AS total_transacciones, revenue AS ingresos_totales,
               revenue / NULLIF(amounts, 0) AS ticket_promedio
        FROM daily_sales
        WHERE {_DAY_RANGE}
        ORDER BY fecha DESC""",
    "clientes": f"""
        SELECT customer_id, customer_name, sum(events) AS total_eventos, sum(transactions) AS transacciones,
               sum(spend) AS gasto_total
        FROM daily_customer_activity
        WHERE {_DAY_RANGE}
        GROUP BY customer_id, customer_name
        ORDER BY gasto_total DESC""",
    "productos": f"""
        SELECT product_id, product_name, category, sum(items) AS veces_vendido, sum(revenue) AS ingresos_generados,
               sum(revenue) / NULLIF(sum(amounts), 0) AS precio_promedio
        FROM daily_product_sales
        WHERE {_DAY_RANGE}
        GROUP BY product_id, product_name, category
        ORDER BY ingresos_generados DESC""",
    "sesiones": f"""
        SELECT outcome, sum(sessions) AS total_sesiones,
               sum(duration_sum) / NULLIF(sum(durations), 0) AS duracion_promedio
        FROM daily_session_outcomes
        WHERE {_DAY_RANGE}
        GROUP BY outcome""",
}
DASHBOARD_QUERIES = {
    name: query.replace(f"WHERE {_DAY_RANGE}\n        ", "") for name, query in RANGE_QUERIES.items()
} | {
    # Summing the daily rows of ~20k customers over 90 days takes seconds: the totals are kept instead.
    "clientes": """
        SELECT customer_id, customer_name, total_eventos, transacciones, gasto_total
        FROM customer_totals
        ORDER BY gasto_total DESC""",
}


def scheduled_range(start: str | None, end: str | None, today: date) -> DayRange:
    """The days of a run: the Params' range if given (checked like a backfill's), else yesterday and today."""
    if start in (None, "") and end in (None, ""):
        return DayRange(today - timedelta(days=1), today)
    return parse_range(start, end, today, today)


def refresh_day(conn, day: date) -> dict[str, int]:
    """Recompute every rollup's rows of one day in one transaction; returns the rows written per table."""
    bounds = {"start": datetime.combine(day, time.min), "end": datetime.combine(day + timedelta(days=1), time.min)}
    written = {}
    with conn, conn.cursor() as cur:
        # Refreshes of the same day queue up instead of both inserting; readers are not blocked.
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(_tables()))
        for table, insert in _DAY_ROWS.items():
            cur.execute(sql.SQL("DELETE FROM {} WHERE day = %s").format(sql.Identifier(table)), (day,))
            cur.execute(insert, bounds)
            written[table] = cur.rowcount
    return written


def prune_before_oldest_source_row(conn) -> int:
    """Remove rollup days older than their source's oldest row (retention dropped them); returns the rows."""
    removed = 0
    with conn, conn.cursor() as cur:
        for table, source in SOURCES.items():
            # An empty source (min is NULL) empties the rollup too.
            cur.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE day < coalesce((SELECT min(\"timestamp\")::date FROM {}), 'infinity')"
                ).format(sql.Identifier(table), sql.Identifier(source))
            )
            removed += cur.rowcount
    return removed


def refresh(conn, days: DayRange) -> dict[str, Any]:
    """Refresh each day of the range, then prune; returns what was written, per day."""
    per_day = {}
    for day in days.days:
        per_day[day.isoformat()] = refresh_day(conn, day)
        log.info("%s: %s", day, per_day[day.isoformat()])
    pruned = prune_before_oldest_source_row(conn)
    refresh_customer_totals(conn)
    return {**days.as_dict(), "days": per_day, "pruned_rows": pruned}


def refresh_customer_totals(conn) -> None:
    """Recompute customer_totals from the daily rows in one transaction; readers keep the old totals meanwhile."""
    with conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE customer_totals IN SHARE ROW EXCLUSIVE MODE")  # two refreshes queue up
        cur.execute("DELETE FROM customer_totals")
        cur.execute(
            "INSERT INTO customer_totals (customer_id, customer_name, total_eventos, transacciones, gasto_total) "
            "SELECT customer_id, customer_name, sum(events), sum(transactions), sum(spend) "
            "FROM daily_customer_activity GROUP BY customer_id, customer_name"
        )


def _tables() -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(table) for table in TABLES)
