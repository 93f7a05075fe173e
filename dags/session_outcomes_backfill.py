"""
### Session outcomes backfill

(Re)computes `customer_sessions.outcome` and `session_data` for every session whose timestamp
(its end, or its start while open) falls on the days `start_date`..`end_date` (UTC, inclusive),
with the consumer's own rules (`plugins/instashop/warehouse/sessions.py`):

- `conversion`: at least one transaction;
- `cart_abandonment`: no transaction, at least one product added to the cart;
- `bounce`: neither; a session that has not ended has no outcome.

Scheduled daily for yesterday. Trigger it by hand with a date range (both empty: yesterday; an
empty end date: the start day only); `dry_run` counts what would change and writes nothing.
The range is checked before anything is written: real `YYYY-MM-DD` dates, end not before start
nor in the future, at most 366 days. Idempotent: a rerun rewrites nothing. One transaction per day.
Logic: `plugins/instashop/warehouse/backfill.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, task

from instashop.ops import airflow_connections as conns
from instashop.ops.dag_defaults import instashop_dag
from instashop.ops.dag_params import date_param, run_params
from instashop.warehouse import backfill, day_ranges


@instashop_dag(
    "session_outcomes_backfill",
    schedule="30 0 * * *",
    doc_md=__doc__,
    tags=["dwh", "sessions", "backfill"],
    params={
        "start_date": date_param("Start date", "First day (UTC), YYYY-MM-DD. Empty with the end date: yesterday."),
        "end_date": date_param("End date", "Last day (UTC), inclusive, YYYY-MM-DD. Empty: the start day."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Count only; write nothing."),
    },
    retries=2,
    retry_delay=timedelta(minutes=2),
)
def session_outcomes_backfill():
    @task(retries=0)  # a bad range stays bad: fail at once, with the reason
    def plan_range(params: dict | None = None, dag_run=None) -> dict:
        params = run_params(params)
        today = pendulum.now("UTC").date()
        default = day_ranges.default_day(dag_run.run_after)
        days = day_ranges.parse_range(params["start_date"], params["end_date"], today, default)
        print(f"backfilling {days.first}..{days.last} ({len(days.days)} days), dry_run={params['dry_run']}")
        return days.as_dict()

    @task
    def recompute_outcomes(days: dict, params: dict | None = None) -> dict:
        params = run_params(params)
        day_range = day_ranges.DayRange.from_dict(days)
        with conns.postgres(conns.DWH_WRITER) as conn:
            results = backfill.backfill(conn, day_range, dry_run=params["dry_run"])
        outcome = backfill.summary(day_range, results, params["dry_run"])
        print(f"{outcome['sessions']} sessions, {outcome['changed']} rewritten (dry_run={outcome['dry_run']})")
        return outcome

    recompute_outcomes(plan_range())  # type: ignore[arg-type]  # an XComArg: Airflow passes its value at run time


session_outcomes_backfill()
