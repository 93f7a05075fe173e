"""What every InstaShop DAG has in common, in one place: `@instashop_dag(...)` instead of `@dag(...)`.

All start on 2026-01-01 UTC without catch-up, one run at a time, tagged `instashop`, their tasks
owned by data-engineering. Each DAG file still says what is its own: id, schedule, documentation
(its module docstring), extra tags, params, how its tasks retry and any other `dag()` argument.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
OWNER = "data-engineering"
TAG = "instashop"


def instashop_dag(
    dag_id: str,
    *,
    schedule: str,
    doc_md: str | None,
    tags: list[str],
    retries: int,
    retry_delay: timedelta,
    params: dict[str, Any] | None = None,
    task_defaults: dict[str, Any] | None = None,
    **dag_args: Any,
) -> Callable:
    """`airflow.sdk.dag` with the common arguments; task_defaults adds to each task's default_args."""
    return dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        doc_md=doc_md,
        tags=[TAG, *tags],
        params=params or {},
        default_args={"owner": OWNER, "retries": retries, "retry_delay": retry_delay, **(task_defaults or {})},
        **dag_args,
    )
