"""Day ranges given by hand (the backfill's and the rollups' Params): what a run covers, the bad input refused."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from instashop.warehouse.day_ranges import MAX_DAYS, DayRange, DayRangeError, default_day, parse_range

TODAY = date(2026, 11, 27)
YESTERDAY = date(2026, 11, 26)


def test_no_dates_means_the_default_day():
    assert parse_range(None, None, TODAY, YESTERDAY) == DayRange(YESTERDAY, YESTERDAY)
    assert parse_range("", "", TODAY, YESTERDAY) == DayRange(YESTERDAY, YESTERDAY)


def test_a_range_is_inclusive_and_a_missing_end_means_one_day():
    days = parse_range("2026-01-30", "2026-02-02", TODAY, YESTERDAY)
    assert days.days == [date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 2)]
    assert parse_range("2026-03-01", None, TODAY, YESTERDAY).days == [date(2026, 3, 1)]
    assert DayRange.from_dict(days.as_dict()) == days


def test_the_longest_range_allowed_is_max_days():
    last = TODAY
    first = last - timedelta(days=MAX_DAYS - 1)
    assert len(parse_range(first.isoformat(), last.isoformat(), TODAY, YESTERDAY).days) == MAX_DAYS


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        ("2026-02-10", "2026-02-01", "end_date 2026-02-01 is before start_date 2026-02-10"),
        ("2024-01-01", "2026-01-01", "spans 732 days, over the limit of 366"),
        ("2026-02-30", "2026-03-01", "start_date '2026-02-30' is not a valid date"),
        ("2026-1-5", "2026-03-01", "start_date '2026-1-5' is not a date of the form YYYY-MM-DD"),
        ("2026-01-01", "01/02/2026", "end_date '01/02/2026' is not a date of the form YYYY-MM-DD"),
        ("2026-01-01", "2026-11-28", "end_date 2026-11-28 is in the future"),
        (None, "2026-01-01", "end_date '2026-01-01' is given without a start_date"),
        (20260101, None, "is not a date of the form"),
    ],
)
def test_bad_ranges_are_refused_naming_the_problem(start, end, problem):
    with pytest.raises(DayRangeError) as err:
        parse_range(start, end, TODAY, YESTERDAY)
    assert problem in str(err.value)


def test_a_scheduled_run_backfills_the_utc_day_before_it_runs():
    assert default_day(datetime(2026, 11, 27, 0, 30, tzinfo=UTC)) == YESTERDAY
    # 01:30 in UTC+2 is still the 26th in UTC
    assert default_day(datetime(2026, 11, 27, 1, 30, tzinfo=timezone(timedelta(hours=2)))) == date(2026, 11, 25)
