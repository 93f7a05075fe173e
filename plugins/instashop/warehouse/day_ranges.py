"""Ranges of whole UTC days given by hand (DAG Params): parsed and checked before anything is written.

A range is first..last inclusive. Both ends are real YYYY-MM-DD dates, last is not before first nor
after today, and it spans at most MAX_DAYS. Used by the session_outcomes_backfill and dwh_rollups
DAGs (`instashop.warehouse.backfill`, `instashop.warehouse.rollups`) and their Params (`DATE_PATTERN`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

MAX_DAYS = 366
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class DayRangeError(ValueError):
    """The requested range is unusable; the message names the problem."""


@dataclass(frozen=True)
class DayRange:
    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def as_dict(self) -> dict[str, str]:
        return {"first": self.first.isoformat(), "last": self.last.isoformat()}

    @classmethod
    def from_dict(cls, value: dict[str, str]) -> DayRange:
        return cls(date.fromisoformat(value["first"]), date.fromisoformat(value["last"]))


def default_day(run_after: datetime) -> date:
    """A scheduled run (no dates given) covers the UTC day before the run."""
    return run_after.astimezone(UTC).date() - timedelta(days=1)


def parse_range(start: str | None, end: str | None, today: date, default_day: date) -> DayRange:
    """The day range of a run: [start, end] from the Params, or default_day when neither is given."""
    if start in (None, "") and end in (None, ""):
        return DayRange(default_day, default_day)
    if start in (None, ""):
        raise DayRangeError(f"end_date {end!r} is given without a start_date")
    first = _parse_day("start_date", start)
    last = _parse_day("end_date", end) if end not in (None, "") else first
    if last < first:
        raise DayRangeError(f"end_date {last} is before start_date {first}")
    if last > today:
        raise DayRangeError(f"end_date {last} is in the future (today is {today} UTC)")
    span = (last - first).days + 1
    if span > MAX_DAYS:
        raise DayRangeError(f"the range {first}..{last} spans {span} days, over the limit of {MAX_DAYS}")
    return DayRange(first, last)


def _parse_day(name: str, value: Any) -> date:
    if not isinstance(value, str) or not re.match(DATE_PATTERN, value):
        raise DayRangeError(f"{name} {value!r} is not a date of the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise DayRangeError(f"{name} {value!r} is not a valid date: {err}") from None
