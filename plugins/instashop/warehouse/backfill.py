"""session_outcomes_backfill: recompute customer_sessions.outcome and session_data for a date range.

The range is whole UTC days, first..last inclusive, by customer_sessions."timestamp" (a session's
end, or its start while it is open), checked before anything is written (`day_ranges.parse_range`).
Each day is its own transaction (short row locks next to the consumer, progress kept on a retry), and
uses the consumer's own rules (`sessions.refresh_sessions_between`), so a rerun changes nothing.
A dry run does the same work and rolls every day back.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any

from instashop.warehouse.day_ranges import DayRange
from instashop.warehouse.sessions import refresh_sessions_between

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayResult:
    day: str
    sessions: int  # sessions whose timestamp falls on the day
    changed: int  # of those, the ones whose outcome or session_data was (or would be) rewritten


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
