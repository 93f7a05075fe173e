"""dwh_reconciliation: does the warehouse agree with the shop's database?

For each event type and UTC day, the row count and the sum of `amount` in realtime_events must
equal the same figures computed from the OLTP source table of that type, and the number of
customer_sessions the number of shop sessions. The window is whole recent days up to `settle`
before now, so changes still on their way through Debezium and the consumer are not differences.
Any differing cell fails the check with both sides' numbers.

The live metrics the Spark app keeps in Redis are checked against the DWH too, per closed
1-minute window: see `reconcile_live_metrics` for which figures must be equal and which may only
be lower in the DWH (the shop deletes some rows after Redis counted them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

SESSIONS = "customer_sessions"

# The truth, written from the shop's schema and the spec ("Tipos de Eventos Procesados": which table
# is which event, its event time, its amount), not derived from the consumer's own mapping
# (events._EVENT_TABLES): a wrong time or amount column there must show here as a difference.
# Times are timestamptz: the day of an event is its UTC day, as in the DWH's naive UTC timestamps.
OLTP_QUERY = """
SELECT 'transaction', (created_at AT TIME ZONE 'UTC')::date, count(*), coalesce(sum(total_amount), 0)
FROM transactions WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY 2
UNION ALL
SELECT 'transaction_item', (created_at AT TIME ZONE 'UTC')::date, count(*), coalesce(sum(amount), 0)
FROM transaction_items WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY 2
UNION ALL
SELECT 'user_behavior', (viewed_at AT TIME ZONE 'UTC')::date, count(*), 0
FROM page_views WHERE viewed_at >= %(start)s AND viewed_at < %(end)s GROUP BY 2
UNION ALL
SELECT 'search', (searched_at AT TIME ZONE 'UTC')::date, count(*), 0
FROM searches WHERE searched_at >= %(start)s AND searched_at < %(end)s GROUP BY 2
UNION ALL
SELECT 'cart_event', (created_at AT TIME ZONE 'UTC')::date, count(*), coalesce(sum(amount), 0)
FROM cart_events WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY 2
UNION ALL
SELECT 'customer_sessions', (coalesce(ended_at, started_at) AT TIME ZONE 'UTC')::date, count(*), 0
FROM sessions WHERE coalesce(ended_at, started_at) >= %(start)s AND coalesce(ended_at, started_at) < %(end)s
GROUP BY 2
"""

_DWH_EVENTS = """
SELECT event_type, "timestamp"::date, count(*), coalesce(sum(amount), 0)
FROM realtime_events WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s GROUP BY 1, 2
"""
_DWH_SESSIONS = f"""
SELECT '{SESSIONS}', "timestamp"::date, count(*), 0
FROM customer_sessions WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s GROUP BY 2
"""
DWH_QUERY = _DWH_EVENTS + "UNION ALL" + _DWH_SESSIONS

Key = tuple[str, date]


@dataclass(frozen=True)
class Totals:
    rows: int
    amount: Decimal


ZERO = Totals(0, Decimal(0))


@dataclass(frozen=True)
class Window:
    """[start, end) in naive UTC, like the DWH's timestamps."""

    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class Mismatch:
    key: Key
    expected: Totals
    actual: Totals

    def describe(self, expected_name: str = "OLTP", actual_name: str = "DWH") -> str:
        kind, day = self.key
        drows = self.actual.rows - self.expected.rows
        damount = self.actual.amount - self.expected.amount
        return (
            f"{kind} {day}: {expected_name} {self.expected.rows} rows, amount {self.expected.amount} | "
            f"{actual_name} {self.actual.rows} rows, amount {self.actual.amount} "
            f"(difference {drows:+d} rows, {damount:+} amount)"
        )


class ReconciliationError(RuntimeError):
    def __init__(self, window: Window, mismatches: list[Mismatch], compared: int) -> None:
        lines = "\n  ".join(m.describe() for m in mismatches)
        super().__init__(
            f"DWH differs from the OLTP truth in {len(mismatches)} of {compared} (type, day) cells "
            f"for [{window.start}, {window.end}) UTC:\n  {lines}"
        )
        self.mismatches = mismatches


def window(now: datetime, lookback_days: int, settle: timedelta) -> Window:
    """From the start of the day lookback_days before (now - settle) to (now - settle), whole minutes."""
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be 0 or more, got {lookback_days}")
    now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    end = (now - settle).replace(second=0, microsecond=0)
    return Window(datetime.combine(end.date() - timedelta(days=lookback_days), time.min), end)


def diff(expected: dict[Key, Totals], actual: dict[Key, Totals]) -> list[Mismatch]:
    """Every key whose totals differ; a key missing on one side counts as zero there."""
    keys = sorted(expected.keys() | actual.keys())
    return [
        Mismatch(key, expected.get(key, ZERO), actual.get(key, ZERO))
        for key in keys
        if expected.get(key, ZERO) != actual.get(key, ZERO)
    ]


def totals(conn, query: str, window: Window, aware: bool) -> dict[Key, Totals]:
    """Run a (kind, day, rows, amount) query over the window; aware=True for timestamptz columns."""
    start, end = (
        (window.start.replace(tzinfo=UTC), window.end.replace(tzinfo=UTC))
        if aware
        else (
            window.start,
            window.end,
        )
    )
    with conn.cursor() as cur:
        cur.execute(query, {"start": start, "end": end})
        rows = cur.fetchall()
    conn.rollback()  # read-only: end the snapshot
    return {(kind, day): Totals(int(count), Decimal(amount)) for kind, day, count, amount in rows}


def reconcile(oltp_conn, dwh_conn, window: Window) -> dict[str, Any]:
    """Compare the window on both sides; raise ReconciliationError on any difference, else a report."""
    # The DWH trails the OLTP: reading it second gives in-flight changes the most time to land.
    expected = totals(oltp_conn, OLTP_QUERY, window, aware=True)
    actual = totals(dwh_conn, DWH_QUERY, window, aware=False)
    mismatches = diff(expected, actual)
    compared = len(expected.keys() | actual.keys())
    if mismatches:
        raise ReconciliationError(window, mismatches, compared)
    return {**window.as_dict(), "cells": compared, "rows": _rows_per_kind(expected)}


def _rows_per_kind(values: dict[Key, Totals]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (kind, _), total in values.items():
        out[kind] = out.get(kind, 0) + total.rows
    return out


# --- live metrics (Redis, written by the Spark app) against the DWH --------------------------------
#
# Per closed 1-minute window (by event time; see instashop.live.metrics). Redis counts what was
# placed; the DWH holds what still exists, and the shop later purges some failed orders (their
# items cascade) and cleaned-up bounced sessions (their views and searches cascade). So figures of
# rows the shop never deletes must be equal, the others may only be lower in the DWH.

LIVE_WIDTH = "1m"
LIVE_EQUAL = ("cart_adds", "cart_removes")
LIVE_AT_LEAST = ("transactions", "revenue", "page_views", "searches", "sessions_ended")
LIVE_FIELDS = (*LIVE_EQUAL, *LIVE_AT_LEAST)

_DWH_LIVE = """
SELECT floor(extract(epoch FROM "timestamp") / %(width)s)::bigint * %(width)s AS start,
       count(*) FILTER (WHERE event_type = 'cart_event' AND raw_data->>'action' = 'add'),
       count(*) FILTER (WHERE event_type = 'cart_event' AND raw_data->>'action' = 'remove'),
       count(*) FILTER (WHERE event_type = 'transaction'),
       coalesce(sum(amount) FILTER (WHERE event_type = 'transaction'), 0),
       count(*) FILTER (WHERE event_type = 'user_behavior'),
       count(*) FILTER (WHERE event_type = 'search'),
       0
FROM realtime_events WHERE "timestamp" >= %(since)s AND "timestamp" < %(until)s GROUP BY 1
UNION ALL
SELECT floor(extract(epoch FROM "timestamp") / %(width)s)::bigint * %(width)s, 0, 0, 0, 0, 0, 0, count(*)
FROM customer_sessions
WHERE "timestamp" >= %(since)s AND "timestamp" < %(until)s AND session_data->>'end_time' IS NOT NULL
GROUP BY 1
"""


@dataclass(frozen=True)
class LiveMismatch:
    start: int  # window start, epoch seconds UTC
    field: str
    redis: Any
    dwh: Any
    exact: bool = False  # compared for equality whatever the field (nothing was deleted)

    def describe(self) -> str:
        rule = "must equal" if self.exact or self.field in LIVE_EQUAL else "must be at least"
        when = datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%d %H:%M")
        return f"{self.field} in the minute from {when} UTC: Redis {self.redis} {rule} DWH {self.dwh}"


class LiveMetricsMismatch(RuntimeError):
    def __init__(self, mismatches: list[LiveMismatch], windows: int) -> None:
        lines = "\n  ".join(m.describe() for m in mismatches)
        super().__init__(f"live metrics in Redis disagree with the DWH in {windows} closed windows:\n  {lines}")
        self.mismatches = mismatches


def live_window(heartbeat: dict[str, Any] | None, now: datetime, lookback: timedelta) -> Window | None:
    """The closed 1-minute windows worth comparing, or None when the Spark app gives none.

    Closed: ending at or before the app's watermark (later events are no longer counted). Complete:
    a new checkpoint starts at the latest offsets, and the shop records a visit when it ends, with
    event times up to the watermark's delay earlier; so only windows starting at least that delay
    (bounded by now - watermark) after the app's process started are whole.
    """
    if not heartbeat or heartbeat.get("status") != "running" or not heartbeat.get("watermark"):
        return None
    width = timedelta(seconds=60)
    now = _naive_utc(now)
    watermark = _naive_utc(datetime.fromisoformat(heartbeat["watermark"]))
    since = _ceil(now - lookback, width)
    if heartbeat.get("started_at"):
        started = _naive_utc(datetime.fromisoformat(heartbeat["started_at"]))
        since = max(since, _ceil(started + (now - watermark), width))
    until = _floor(watermark, width)
    return Window(since, until) if since < until else None


def diff_live(
    redis: dict[int, dict[str, Any]], dwh: dict[int, dict[str, Any]], window: Window, exact: bool = False
) -> list[LiveMismatch]:
    """Compare every minute of the window; a minute absent on one side is all zeros there.

    exact: every figure must be equal, for a span in which the shop deleted nothing (the chaos soak's
    load): then a figure Redis counted twice is a difference too."""
    mismatches = []
    start = int(window.start.replace(tzinfo=UTC).timestamp())
    end = int(window.end.replace(tzinfo=UTC).timestamp())
    for minute in range(start, end, 60):
        mine, theirs = redis.get(minute, {}), dwh.get(minute, {})
        for field in LIVE_FIELDS:
            r, d = _number(mine.get(field)), _number(theirs.get(field))
            if (r != d) if exact or field in LIVE_EQUAL else (r < d):
                mismatches.append(LiveMismatch(minute, field, r, d, exact))
    return mismatches


def live_totals_from_dwh(conn, window: Window) -> dict[int, dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(_DWH_LIVE, {"width": 60, "since": window.start, "until": window.end})
        rows = cur.fetchall()
    conn.rollback()
    out: dict[int, dict[str, Any]] = {}
    for start, *values in rows:
        merged = out.setdefault(int(start), dict.fromkeys(LIVE_FIELDS, 0))
        for field, value in zip(LIVE_FIELDS, values, strict=True):
            merged[field] += value
    return out


def reconcile_live_metrics(
    redis_client, dwh_conn, now: datetime, lookback: timedelta, prefix: str | None = None
) -> dict[str, Any]:
    """Redis live totals against the DWH over recent closed windows; raises LiveMetricsMismatch.

    Returns {"skipped": reason} when the Spark app publishes no usable window (not running, no
    watermark yet, or started too recently).
    """
    from instashop.live import metrics as live_metrics

    prefix = prefix or live_metrics.PREFIX  # another prefix: a second app's keys (tests)
    heartbeat = live_metrics.read_heartbeat(redis_client, prefix)
    window = live_window(heartbeat, now, lookback)
    if window is None:
        status = (heartbeat or {}).get("status", "no heartbeat")
        return {"skipped": f"no closed window to compare (Spark app: {status})"}
    dwh = live_totals_from_dwh(dwh_conn, window)
    redis = {
        w["start"]: {f: w[f] for f in LIVE_FIELDS}
        for w in live_metrics.read_windows(redis_client, LIVE_WIDTH, window.start, window.end, prefix=prefix)
    }
    mismatches = diff_live(redis, dwh, window)
    minutes = int((window.end - window.start).total_seconds() // 60)
    if mismatches:
        raise LiveMetricsMismatch(mismatches, minutes)
    return {**window.as_dict(), "windows": minutes}


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _floor(moment: datetime, width: timedelta) -> datetime:
    seconds = int(width.total_seconds())
    epoch = int(moment.replace(tzinfo=UTC).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC).replace(tzinfo=None)


def _ceil(moment: datetime, width: timedelta) -> datetime:
    floor = _floor(moment, width)
    return floor if floor == moment else floor + width


def _number(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)
