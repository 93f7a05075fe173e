"""The days a dwh_rollups run refreshes."""

from datetime import date

import pytest

from instashop.warehouse.day_ranges import DayRange, DayRangeError
from instashop.warehouse.rollups import DASHBOARD_QUERIES, RANGE_QUERIES, TABLES, scheduled_range

TODAY = date(2026, 11, 27)


def test_a_scheduled_run_refreshes_yesterday_and_today():
    assert scheduled_range(None, None, TODAY) == DayRange(date(2026, 11, 26), TODAY)
    assert scheduled_range("", "", TODAY) == DayRange(date(2026, 11, 26), TODAY)


def test_a_manual_run_refreshes_its_range_checked_like_a_backfill():
    assert scheduled_range("2026-01-30", "2026-02-02", TODAY).days[-1] == date(2026, 2, 2)
    assert scheduled_range("2026-03-01", None, TODAY) == DayRange(date(2026, 3, 1), date(2026, 3, 1))
    with pytest.raises(DayRangeError, match="is before start_date"):
        scheduled_range("2026-02-10", "2026-02-01", TODAY)
    with pytest.raises(DayRangeError, match="in the future"):
        scheduled_range("2026-11-27", "2026-11-28", TODAY)


def test_every_spec_query_has_a_rollup_answer():
    assert set(DASHBOARD_QUERIES) == set(RANGE_QUERIES) == {"transacciones", "clientes", "productos", "sesiones"}
    assert all("%(first)s" in query and "%(last)s" in query for query in RANGE_QUERIES.values())
    assert not any("%(" in query for query in DASHBOARD_QUERIES.values())
    assert len(TABLES) == 4
