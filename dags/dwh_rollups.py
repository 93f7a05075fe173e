"""
### DWH daily rollups

Every 15 minutes, recomputes the dashboards' daily rollups (`daily_sales`,
`daily_customer_activity`, `daily_product_sales`, `daily_session_outcomes`) for yesterday and today
(UTC) from `realtime_events` and `customer_sessions`; each day is one transaction that replaces the
day's rows, so dashboards read either the old or the new day. Days older than the oldest row left
(dropped by retention) leave the rollups too.

The rollups answer the spec's four typical queries in milliseconds instead of seconds on 10M events
(`benchmarks/warehouse_queries.py`); they lag the live table by up to one schedule interval. After a
backfill or a late replay of older days, trigger this DAG by hand with the range (`start_date`,
`end_date`: YYYY-MM-DD, inclusive, at most 366 days, not in the future; empty: the start day only).
Runs as `dwh_maintainer`. Idempotent. Logic: `plugins/instashop/warehouse/rollups.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import task

from instashop.ops import airflow_connections as conns
from instashop.ops.dag_defaults import instashop_dag
from instashop.ops.dag_params import date_param, run_params
from instashop.warehouse import rollups
from instashop.warehouse.day_ranges import DayRange


@instashop_dag(
    "dwh_rollups",
    schedule="*/15 * * * *",
    doc_md=__doc__,
    tags=["dwh", "rollups"],
    params={
        "start_date": date_param(
            "Start date", "First day (UTC), YYYY-MM-DD. Empty, with the end date: yesterday and today."
        ),
        "end_date": date_param("End date", "Last day (UTC), inclusive, YYYY-MM-DD. Empty: the start day."),
    },
    retries=2,
    retry_delay=timedelta(minutes=1),
)
def dwh_rollups():
    @task(retries=0)  # a bad range stays bad: fail at once, with the reason
    def plan_days(params: dict | None = None) -> dict:
        params = run_params(params)
        days = rollups.scheduled_range(params["start_date"], params["end_date"], pendulum.now("UTC").date())
        print(f"refreshing {days.first}..{days.last} ({len(days.days)} days)")
        return days.as_dict()

    @task(execution_timeout=timedelta(minutes=10))
    def refresh_rollups(days: dict) -> dict:
        with conns.postgres(conns.DWH_MAINTAINER) as conn:
            report = rollups.refresh(conn, DayRange.from_dict(days))
        for day, written in report["days"].items():
            print(f"{day}: {written}")
        print(f"pruned {report['pruned_rows']} rows of days no longer in the sources")
        return report

    refresh_rollups(plan_days())  # type: ignore[arg-type]  # an XComArg: Airflow passes its value at run time


dwh_rollups()
