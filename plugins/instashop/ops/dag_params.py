"""Params shared by the DAGs that take a day range by hand (Airflow validates them at trigger time)."""

from __future__ import annotations

from airflow.sdk import Param

from instashop.warehouse.day_ranges import DATE_PATTERN


def date_param(title: str, description: str) -> Param:
    """An optional day, YYYY-MM-DD: the trigger form shows a date picker, the REST API refuses others."""
    return Param(
        None, type=["null", "string"], format="date", pattern=DATE_PATTERN, title=title, description=description
    )
