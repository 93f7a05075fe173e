"""Retention: which days a run drops, and where the retention period comes from."""

from datetime import date

import pytest

from instashop.warehouse.partitions import (
    DEFAULT_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    days_to_drop,
    resolve_retention_days,
    retention_cutoff,
)

TODAY = date(2026, 11, 27)


def test_cutoff_keeps_exactly_the_retention_period_before_today():
    assert retention_cutoff(TODAY, 90) == date(2026, 8, 29)
    assert retention_cutoff(TODAY, 1) == date(2026, 11, 26)


def test_only_days_before_the_cutoff_are_dropped_oldest_first():
    days = {date(2026, 8, 27), date(2026, 8, 28), date(2026, 8, 29), TODAY, date(2026, 12, 4), date(2025, 1, 1)}
    assert days_to_drop(days, retention_cutoff(TODAY, 90), TODAY) == [
        date(2025, 1, 1),
        date(2026, 8, 27),
        date(2026, 8, 28),
    ]


def test_current_and_future_partitions_survive_the_shortest_retention():
    days = {date(2026, 11, 25), date(2026, 11, 26), TODAY, date(2026, 11, 28)}
    assert days_to_drop(days, retention_cutoff(TODAY, 1), TODAY) == [date(2026, 11, 25)]


def test_a_cutoff_after_today_is_refused():
    with pytest.raises(ValueError, match="after today"):
        days_to_drop({TODAY}, date(2026, 11, 28), TODAY)
    with pytest.raises(ValueError, match="at least 1 day"):
        retention_cutoff(TODAY, 0)


@pytest.mark.parametrize(
    ("param", "variable", "expected"),
    [
        (None, None, DEFAULT_RETENTION_DAYS),
        (None, "", DEFAULT_RETENTION_DAYS),
        (None, "30", 30),
        (7, "30", 7),  # the run's Param wins over the Variable
    ],
)
def test_retention_days_come_from_param_then_variable_then_default(param, variable, expected):
    assert resolve_retention_days(param, variable) == expected


@pytest.mark.parametrize(
    ("param", "variable", "problem"),
    [(None, "ninety", "Variable dwh_retention_days must be a whole number"), (0, None, "at least 1 day")],
)
def test_unusable_retention_is_rejected_naming_its_source(param, variable, problem):
    with pytest.raises(ValueError, match=problem):
        resolve_retention_days(param, variable)


@pytest.mark.parametrize(("param", "variable"), [(MIN_RETENTION_DAYS - 1, None), (None, "1")])
def test_a_retention_under_the_minimum_is_refused_unless_forced(param, variable):
    with pytest.raises(ValueError, match=f"under the minimum of {MIN_RETENTION_DAYS}: trigger with force=true"):
        resolve_retention_days(param, variable)
    assert resolve_retention_days(param, variable, force=True) == int(param or variable)
    assert resolve_retention_days(MIN_RETENTION_DAYS, None) == MIN_RETENTION_DAYS
