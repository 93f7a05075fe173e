"""Daily range partitions of `realtime_events`: create ahead, rescue the default partition, inventory.

Plain, idempotent DDL (pg_partman 4.x is what Debian packages, with an API unlike 5.x). A day
whose rows already sit in the default partition gets its partition by moving those rows into a
new table and attaching it, all in one transaction, with the default partition locked so the
consumer cannot slip new rows for that day in between.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

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


def existing_days(conn) -> set[date]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            (PARENT,),
        )
        return {day for (name,) in cur.fetchall() if (day := partition_day(name))}


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
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            (PARENT,),
        )
        names = [name for (name,) in cur.fetchall()]
        partitions = []
        for name in names:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
            partitions.append(Partition(name, partition_day(name), cur.fetchone()[0]))
    return sorted(partitions, key=lambda p: (p.day is None, p.day or date.min))


def _create_partition(conn, day: date) -> None:
    name, lower, upper = partition_name(day), day, day + timedelta(days=1)
    ident = sql.Identifier(name)
    with conn, conn.cursor() as cur:
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
