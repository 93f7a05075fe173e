"""Daily range partitions of `realtime_events`: create ahead, rescue the default partition, inventory.

Plain, idempotent DDL (pg_partman 4.x is what Debian packages, with an API unlike 5.x). A day
whose rows already sit in the default partition gets its partition by moving those rows into a
new table and attaching it, all in one transaction, with the default partition locked so the
consumer cannot slip new rows for that day in between.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from psycopg2 import sql

log = logging.getLogger(__name__)

PARENT = "realtime_events"
DEFAULT_PARTITION = f"{PARENT}_default"
_NAME = re.compile(rf"^{PARENT}_p(\d{{8}})$")


@dataclass(frozen=True)
class Partition:
    name: str
    day: date | None  # None for the default partition
    rows: int


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The day a partition covers, from its name; None for names we did not create."""
    match = _NAME.match(name)
    return datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def partition_names(conn) -> list[str]:
    """Every partition attached to the parent, the default one included."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            (PARENT,),
        )
        return [name for (name,) in cur.fetchall()]


def existing_days(conn) -> set[date]:
    return {day for name in partition_names(conn) if (day := partition_day(name))}


def ensure_daily_partitions(conn, first: date, last: date) -> list[str]:
    """Create the missing daily partitions for first..last; returns the names created."""
    have = existing_days(conn)
    created = []
    for day in days_between(first, last):
        if day not in have:
            _create_partition(conn, day)
            created.append(partition_name(day))
    return created


def rescue_default_partition(conn) -> list[str]:
    """Give every day found in the default partition its own partition; returns those created."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL('SELECT DISTINCT "timestamp"::date FROM {}').format(sql.Identifier(DEFAULT_PARTITION)))
        days = sorted(day for (day,) in cur.fetchall())
    return [name for day in days for name in ensure_daily_partitions(conn, day, day)]


def inventory(conn) -> list[Partition]:
    """Every partition with its exact row count, oldest first, the default one last."""
    partitions = []
    with conn.cursor() as cur:
        for name in partition_names(conn):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
            partitions.append(Partition(name, partition_day(name), cur.fetchone()[0]))
    return sorted(partitions, key=lambda p: (p.day is None, p.day or date.min))


def _create_partition(conn, day: date) -> None:
    name, lower, upper = partition_name(day), day, day + timedelta(days=1)
    ident = sql.Identifier(name)
    with conn, conn.cursor() as cur:
        # Writers lock the parent, then the partition each row goes to; take the same order (ONLY:
        # not every partition), else a writer whose next row is late for a new day deadlocks with us.
        cur.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(PARENT)))
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(DEFAULT_PARTITION)))
        cur.execute(
            sql.SQL('SELECT count(*) FROM {} WHERE "timestamp" >= %s AND "timestamp" < %s').format(
                sql.Identifier(DEFAULT_PARTITION)
            ),
            (lower, upper),
        )
        stranded = cur.fetchone()[0]
        if not stranded:
            cur.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (%s) TO (%s)").format(
                    ident, sql.Identifier(PARENT)
                ),
                (lower, upper),
            )
        else:
            cur.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                    ident, sql.Identifier(PARENT)
                )
            )
            cur.execute(
                sql.SQL(
                    'WITH moved AS (DELETE FROM {} WHERE "timestamp" >= %s AND "timestamp" < %s RETURNING *) '
                    "INSERT INTO {} SELECT * FROM moved"
                ).format(sql.Identifier(DEFAULT_PARTITION), ident),
                (lower, upper),
            )
            cur.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM (%s) TO (%s)").format(
                    sql.Identifier(PARENT), ident
                ),
                (lower, upper),
            )
    log.info("created partition %s%s", name, f" (moved {stranded} rows out of the default)" if stranded else "")


# --- ownership and retention (the dwh_partition_maintenance and dwh_retention DAGs) ------------

DEFAULT_RETENTION_DAYS = 90
# A shorter retention drops weeks the dashboards, the reconciliation and the session backfills
# still read: a typo (1 for 100) would wipe the warehouse. Below it a run must be forced.
MIN_RETENTION_DAYS = 7
# DETACH/DROP wait for an ACCESS EXCLUSIVE lock on the parent, and every insert queues behind a
# waiting request: give up quickly (the task retries) rather than stall the consumer.
LOCK_TIMEOUT = "5s"


def adopt_partitions(conn) -> list[str]:
    """Hand partitions a superuser created to dwh_maintainer (see sql/dwh/004_maintainer.sql)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT adopt_realtime_events_partitions()")
        return [name for (name,) in cur.fetchall()]


def resolve_retention_days(param: int | None, variable: str | None, force: bool = False) -> int:
    """Retention in days: the run's Param if given, else the Airflow Variable, else the default.

    Under MIN_RETENTION_DAYS only with `force`; never under 1 (today's partition is never dropped).
    """
    for source, value in (("param retention_days", param), ("Variable dwh_retention_days", variable)):
        if value is None or value == "":
            continue
        try:
            days = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{source} must be a whole number of days, got {value!r}") from None
        if days < 1:
            raise ValueError(f"{source} must be at least 1 day (today's partition is never dropped), got {days}")
        if days < MIN_RETENTION_DAYS and not force:
            raise ValueError(
                f"{source} is {days} days, under the minimum of {MIN_RETENTION_DAYS}: "
                "trigger with force=true to drop that much history"
            )
        return days
    return DEFAULT_RETENTION_DAYS


def retention_cutoff(today: date, retention_days: int) -> date:
    """The oldest day kept: partitions of earlier days are dropped; today's and later ones never."""
    if retention_days < 1:
        raise ValueError(f"retention must be at least 1 day, got {retention_days}")
    return today - timedelta(days=retention_days)


def days_to_drop(days: Iterable[date], cutoff: date, today: date) -> list[date]:
    """The days before cutoff, oldest first; refuses a cutoff that would reach today or later."""
    if cutoff > today:
        raise ValueError(f"cutoff {cutoff} is after today ({today}): the current partition would be dropped")
    return sorted(day for day in days if day < cutoff)


def drop_partitions_older_than(conn, cutoff: date, today: date | None = None) -> list[Partition]:
    """Detach and drop the daily partitions of days before cutoff; returns them with their row counts.

    Each partition goes in its own transaction, so a lock timeout keeps what was already dropped.
    The default partition and tables not named by `partition_name` are never touched.
    """
    today = today or datetime.now(UTC).date()
    return [_drop_partition(conn, day) for day in days_to_drop(existing_days(conn), cutoff, today)]


def _drop_partition(conn, day: date) -> Partition:
    name = partition_name(day)
    ident = sql.Identifier(name)
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ident))
        rows = cur.fetchone()[0]
        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(PARENT), ident))
        cur.execute(sql.SQL("DROP TABLE {}").format(ident))
    log.info("dropped partition %s (%d rows)", name, rows)
    return Partition(name, day, rows)
