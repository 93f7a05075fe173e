"""session_outcomes_backfill: recompute customer_sessions.outcome and session_data for a date range.

The range is whole UTC days, first..last inclusive, by customer_sessions."timestamp" (a session's
end, or its start while it is open). It is checked before anything is written: both ends are real
YYYY-MM-DD dates, last is not before first nor after today, and it spans at most MAX_DAYS. Each
day is its own transaction (short row locks next to the consumer, progress kept on a retry), and
uses the consumer's own rules (`sessions.refresh_sessions_between`), so a rerun changes nothing.
A dry run does the same work and rolls every day back.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from instashop.warehouse.sessions import refresh_sessions_between

log = logging.getLogger(__name__)

MAX_DAYS = 366
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class BackfillRangeError(ValueError):
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


@dataclass(frozen=True)
class DayResult:
    day: str
    sessions: int  # sessions whose timestamp falls on the day
    changed: int  # of those, the ones whose outcome or session_data was (or would be) rewritten


def default_day(run_after: datetime) -> date:
    """A scheduled run (no dates given) backfills the UTC day before the run."""
    return run_after.astimezone(UTC).date() - timedelta(days=1)


def parse_range(start: str | None, end: str | None, today: date, default_day: date) -> DayRange:
    """The day range of a run: [start, end] from the Params, or default_day when neither is given."""
    if start in (None, "") and end in (None, ""):
        return DayRange(default_day, default_day)
    if start in (None, ""):
        raise BackfillRangeError(f"end_date {end!r} is given without a start_date")
    first = _parse_day("start_date", start)
    last = _parse_day("end_date", end) if end not in (None, "") else first
    if last < first:
        raise BackfillRangeError(f"end_date {last} is before start_date {first}")
    if last > today:
        raise BackfillRangeError(f"end_date {last} is in the future (today is {today} UTC)")
    span = (last - first).days + 1
    if span > MAX_DAYS:
        raise BackfillRangeError(f"the range {first}..{last} spans {span} days, over the limit of {MAX_DAYS}")
    return DayRange(first, last)


def _parse_day(name: str, value: Any) -> date:
    if not isinstance(value, str) or not re.match(DATE_PATTERN, value):
        raise BackfillRangeError(f"{name} {value!r} is not a date of the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise BackfillRangeError(f"{name} {value!r} is not a valid date: {err}") from None


def backfill(conn, days: DayRange, dry_run: bool = False) -> list[DayResult]:
    """Recompute every session of each day; one transaction per day, rolled back on a dry run."""
    results = []
    for day in days.days:
        start = datetime.combine(day, time.min)
        end = start + timedelta(days=1)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    'SELECT count(*) FROM customer_sessions WHERE "timestamp" >= %s AND "timestamp" < %s',
                    (start, end),
                )
                sessions = cur.fetchone()[0]
                changed = refresh_sessions_between(cur, start, end)
        except BaseException:
            conn.rollback()
            raise
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
        result = DayResult(day.isoformat(), sessions, changed)
        log.info("%s%s: %d sessions, %d rewritten", "[dry run] " if dry_run else "", day, sessions, changed)
        results.append(result)
    return results


def summary(days: DayRange, results: list[DayResult], dry_run: bool) -> dict[str, Any]:
    return {
        **days.as_dict(),
        "dry_run": dry_run,
        "sessions": sum(r.sessions for r in results),
        "changed": sum(r.changed for r in results),
        "days": [asdict(r) for r in results],
    }
