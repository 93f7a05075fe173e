"""Reconciliation diffing: which cells differ, and how the failure reads."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from instashop.warehouse.reconciliation import (
    ZERO,
    LiveMetricsMismatch,
    Mismatch,
    ReconciliationError,
    Totals,
    Window,
    diff,
    diff_live,
    live_window,
    window,
)

DAY = date(2026, 11, 27)


def test_equal_totals_have_no_mismatch():
    totals = {("transaction", DAY): Totals(3, Decimal("10.50")), ("search", DAY): Totals(7, Decimal(0))}
    assert diff(totals, dict(totals)) == []


def test_a_differing_count_or_amount_and_a_missing_cell_are_mismatches():
    expected = {
        ("transaction", DAY): Totals(3, Decimal("10.50")),
        ("cart_event", DAY): Totals(2, Decimal("4.00")),
        ("search", DAY): Totals(5, Decimal(0)),
    }
    actual = {
        ("transaction", DAY): Totals(3, Decimal("11.50")),
        ("cart_event", DAY): Totals(1, Decimal("4.00")),
        ("user_behavior", DAY): Totals(1, Decimal(0)),
    }
    found = {m.key: (m.expected, m.actual) for m in diff(expected, actual)}
    assert found == {
        ("transaction", DAY): (Totals(3, Decimal("10.50")), Totals(3, Decimal("11.50"))),
        ("cart_event", DAY): (Totals(2, Decimal("4.00")), Totals(1, Decimal("4.00"))),
        ("search", DAY): (Totals(5, Decimal(0)), ZERO),
        ("user_behavior", DAY): (ZERO, Totals(1, Decimal(0))),
    }


def test_the_failure_names_every_cell_with_both_sides_numbers():
    mismatch = Mismatch(("transaction", DAY), Totals(3, Decimal("10.50")), Totals(2, Decimal("7.25")))
    error = ReconciliationError(Window(datetime(2026, 11, 26), datetime(2026, 11, 27, 10)), [mismatch], 12)
    assert "1 of 12 (type, day) cells" in str(error)
    assert (
        "transaction 2026-11-27: OLTP 3 rows, amount 10.50 | DWH 2 rows, amount 7.25 "
        "(difference -1 rows, -3.25 amount)" in str(error)
    )


def test_the_window_is_whole_days_back_to_a_settled_minute():
    now = datetime(2026, 11, 27, 10, 7, 42)
    assert window(now, 1, timedelta(minutes=5)) == Window(datetime(2026, 11, 26), datetime(2026, 11, 27, 10, 2))
    assert window(now, 0, timedelta(minutes=5)).start == datetime(2026, 11, 27)
    with pytest.raises(ValueError):
        window(now, -1, timedelta(minutes=5))


# --- live metrics (Redis) against the DWH -----------------------------------------------------------

NOW = datetime(2026, 11, 27, 12, 0, 30)
RUNNING = {"status": "running", "watermark": "2026-11-27T11:45:10.000Z", "started_at": "2026-11-27T10:00:00+00:00"}


def test_live_windows_are_closed_by_the_watermark_and_start_after_the_app():
    assert live_window(RUNNING, NOW, timedelta(minutes=60)) == Window(
        datetime(2026, 11, 27, 11, 1), datetime(2026, 11, 27, 11, 45)
    )
    # Visits are recorded when they end: a window is whole only a watermark delay after the start.
    just_started = {**RUNNING, "started_at": "2026-11-27T11:20:20+00:00"}  # + 15m20s = 11:35:40
    assert live_window(just_started, NOW, timedelta(minutes=60)).start == datetime(2026, 11, 27, 11, 36)


@pytest.mark.parametrize(
    "heartbeat",
    [
        None,
        {**RUNNING, "status": "failed"},
        {**RUNNING, "watermark": ""},
        {**RUNNING, "started_at": "2026-11-27T11:44:30Z"},
    ],
)
def test_no_live_window_without_a_running_app_with_closed_windows(heartbeat):
    assert live_window(heartbeat, NOW, timedelta(minutes=60)) is None


def test_live_figures_never_deleted_must_match_the_others_may_only_be_lower_in_the_dwh():
    window = Window(datetime(2026, 11, 27, 11, 0), datetime(2026, 11, 27, 11, 3))
    first, second, third = (int(window.start.replace(tzinfo=UTC).timestamp()) + 60 * n for n in range(3))
    redis = {
        first: {"cart_adds": 4, "cart_removes": 1, "transactions": 3, "revenue": Decimal("30.00"), "page_views": 9},
        second: {"cart_adds": 2, "transactions": 1, "revenue": Decimal("5.00")},
    }
    dwh = {
        first: {"cart_adds": 4, "cart_removes": 1, "transactions": 2, "revenue": Decimal("20.00"), "page_views": 8},
        second: {"cart_adds": 3, "transactions": 2, "revenue": Decimal("5.00")},
        third: {"searches": 1},
    }
    found = {(m.start, m.field): (m.redis, m.dwh) for m in diff_live(redis, dwh, window)}
    assert found == {(second, "cart_adds"): (2, 3), (second, "transactions"): (1, 2), (third, "searches"): (0, 1)}
    assert "cart_adds in the minute from 2026-11-27 11:01 UTC: Redis 2 must equal DWH 3" in str(
        LiveMetricsMismatch(diff_live(redis, dwh, window), 3)
    )
