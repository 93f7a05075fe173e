"""Params of the DAGs: the day range they take by hand (Airflow validates it at trigger time), and
the run's Params as a task receives them."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from instashop.warehouse.day_ranges import DATE_PATTERN


def date_param(title: str, description: str) -> Param:
    """An optional day, YYYY-MM-DD: the trigger form shows a date picker, the REST API refuses others."""
    return Param(
        None, type=["null", "string"], format="date", pattern=DATE_PATTERN, title=title, description=description
    )


def run_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The run's Params, which Airflow hands every task that names a `params` argument; a task's
    signature must default it to None, so this is where the None (a call outside a run) stops."""
    if params is None:
        raise RuntimeError("no Params: this task runs inside a DAG run, where Airflow passes them")
    return params
