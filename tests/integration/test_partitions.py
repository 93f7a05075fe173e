"""Creating daily partitions against the real DWH while the consumer's role is writing.

Synthetic rows live on days in May 2000, far from the pipeline's own, and are removed again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, datetime

import psycopg2
import pytest

from instashop.warehouse import partitions
from tests.support.pipeline import drop_day_partitions, fetch

pytestmark = pytest.mark.integration

NEW_DAY = date(2000, 5, 1)  # gets its partition during the test
OPEN_DAY = date(2000, 5, 2)  # has one: the writer's first row goes there

_INSERT = "INSERT INTO realtime_events (event_type, \"timestamp\", event_key, source_lsn) VALUES ('search', %s, %s, 1)"


@pytest.fixture
def test_days_clean(maintainer) -> Iterator[None]:
    _remove(maintainer)
    yield
    _remove(maintainer)


def _remove(conn) -> None:
    drop_day_partitions(conn, (NEW_DAY, OPEN_DAY))
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM realtime_events_default WHERE event_key LIKE 'partitions-test:%'")


def _waiting_on_a_lock(settings, pid: int) -> bool:
    rows = fetch(settings.dwh_admin("dwh"), f"SELECT wait_event_type FROM pg_stat_activity WHERE pid = {pid}")
    return rows == [("Lock",)]


@pytest.mark.timeout(120)
def test_creating_a_partition_while_a_writer_holds_the_table_neither_deadlocks_nor_loses_a_row(
    settings, maintainer, test_days_clean
):
    """The consumer's transaction locks the parent, then whichever partition each row goes to. A
    creator that locked the default partition first and the parent second would deadlock with it
    as soon as the writer's next row went to the default partition (a late event)."""
    partitions.ensure_daily_partitions(maintainer, OPEN_DAY, OPEN_DAY)
    writer = psycopg2.connect(settings.dwh_dsn)
    try:
        with writer.cursor() as cur:
            cur.execute(_INSERT, (datetime(2000, 5, 2, 9), "partitions-test:open-day"))
        creator_pid = maintainer.get_backend_pid()
        failures: list[Exception] = []

        def create() -> None:
            try:
                partitions.ensure_daily_partitions(maintainer, NEW_DAY, NEW_DAY)
            except Exception as exc:  # reported by the assertion below
                failures.append(exc)

        creator = threading.Thread(target=create)
        creator.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(settings, creator_pid):
            assert creator.is_alive() and time.monotonic() < deadline, f"creator never waited: {failures}"
            time.sleep(0.1)
        # The writer's next row is late: no partition for its day yet, so it goes to the default.
        with writer.cursor() as cur:
            cur.execute(_INSERT, (datetime(2000, 5, 1, 9), "partitions-test:late"))
        writer.commit()
        creator.join(timeout=30)
        assert not creator.is_alive() and not failures, failures
    finally:
        writer.close()
    new_partition = partitions.partition_name(NEW_DAY)
    assert fetch(settings.dwh_maintainer_dsn, f"SELECT event_key FROM {new_partition}") == [("partitions-test:late",)]
    assert NEW_DAY in partitions.existing_days(maintainer)
