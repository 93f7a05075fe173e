"""Comparing a Superset chart with its source: the chart's records (JSON) and the source's rows
(psycopg2) on one footing, deep equality within tolerances, the verifiers of the usual chart kinds
(a Big Number, one value per key, a top n, a raw table), and reading both while the source holds still.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from instashop.settings import Settings
from tests.support.pipeline import fetch

ATTEMPTS = 10  # brackets tried before a comparison gives up on a DWH that keeps changing

Rows = list[tuple]
Records = list[dict[str, Any]]


class Dwh:
    """Queries on the DWH through the read-only DSN (its repr, shown in failures, holds no password)."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.dwh_readonly_dsn

    def __repr__(self) -> str:
        return "Dwh(DWH_READONLY_DSN)"

    def rows(self, sql: str) -> Rows:
        return fetch(self._dsn, sql)


@dataclass(frozen=True)
class Source:
    """Where a chart's truth comes from: a query on the DWH run by the test."""

    sql: str

    def read(self, dwh: Dwh) -> Rows:
        return dwh.rows(self.sql)


@dataclass(frozen=True)
class Expect:
    source: Source
    # (chart records, source rows) -> None, raising AssertionError on a difference.
    verify: Callable[[Records, Rows], None]
    # Sources whose answer depends on now() cannot be bracketed; their checks carry tolerances.
    volatile: bool = False


def number(value: Any) -> Any:
    """Chart JSON and psycopg2 values on one footing: numbers as float, times as epoch ms (UTC)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.timestamp() * 1000
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000
    return value


def assert_close(got: Any, want: Any, where: str = "", rel: float = 1e-9, abs_: float = 1e-6) -> None:
    """Deep equality, numbers within a rounding tolerance (Superset sends them as JSON floats)."""
    got, want = number(got), number(want)
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{where}: keys {got} != {want}"
        for key in want:
            assert_close(got[key], want[key], f"{where}[{key!r}]", rel, abs_)
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]", rel, abs_)
    elif isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=rel, abs_tol=abs_), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def total(index: int, divide_by: int | None = None) -> Callable[[Rows], float]:
    """Sum of a column of the source, or the ratio of two column sums."""

    def compute(rows: Rows) -> float:
        value = sum(Decimal(row[index] or 0) for row in rows)
        if divide_by is None:
            return float(value)
        return float(value / sum(Decimal(row[divide_by]) for row in rows))

    return compute


def single(label: str, compute: Callable[[Rows], Any]) -> Callable[[Records, Rows], None]:
    """A Big Number: one record, one value."""

    def verify(records: Records, rows: Rows) -> None:
        assert_close(records, [{label: compute(rows)}], label)

    return verify


def keyed(key: str, label: str, compute: Callable[[Rows], dict[Any, Any]]) -> Callable[[Records, Rows], None]:
    """One record per key (a category, a day); order does not matter."""

    def verify(records: Records, rows: Rows) -> None:
        got = {number(r[key]): r[label] for r in records}
        want = {number(k): v for k, v in compute(rows).items()}
        assert len(got) == len(records), f"{key} repeats in {records}"
        assert_close(got, want, label)

    return verify


def group(rows: Rows, key: Callable[[tuple], Any], value: Callable[[Iterable[tuple]], Any]) -> dict[Any, Any]:
    groups: dict[Any, list[tuple]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return {k: value(members) for k, members in groups.items()}


def top(key: Callable[[dict], Any], label: str, spec_key: int, spec_value: int, n: int) -> Callable[..., None]:
    """The n largest by a value: the same values as the source's n largest (ties may swap rows)."""

    def verify(records: Records, rows: Rows) -> None:
        want_values = sorted((float(r[spec_value]) for r in rows), reverse=True)[:n]
        assert_close([r[label] for r in records], want_values, f"top {n} {label}")
        by_key = {row[spec_key]: float(row[spec_value]) for row in rows}
        for record in records:
            assert_close(record[label], by_key[key(record)], f"{label} of {key(record)}")

    return verify


def table_rows(columns: list[str], n: int, order_index: int, desc: bool = True) -> Callable[[Records, Rows], None]:
    """A raw table: its rows are source rows, in the source's order of one column, n of them."""

    def verify(records: Records, rows: Rows) -> None:
        ordered = sorted(rows, key=lambda r: number(r[order_index]), reverse=desc)[:n]
        assert_close([record[columns[order_index]] for record in records], [r[order_index] for r in ordered])
        source = Counter(tuple(number(v) for v in row) for row in rows)
        for record in records:
            got = tuple(number(record[c]) for c in columns)
            assert any(_close_tuple(got, row) for row in source), f"row {got} is not in the source"

    return verify


def _close_tuple(got: tuple, want: tuple) -> bool:
    try:
        assert_close(got, want)
    except AssertionError:
        return False
    return True


def by_outcome(rows: Rows, index: int) -> dict[str, Any]:
    return {(row[0] or "in progress"): row[index] for row in rows}


def bracketed(read: Callable[[], Any], chart: Callable[[], Records], volatile: bool = False) -> tuple[Records, Any]:
    """The chart's records with the source they must equal, read while the source held still."""
    for _ in range(ATTEMPTS):
        before = read()
        records = chart()
        if volatile:
            return records, before
        if read() == before:
            return records, before
        time.sleep(0.3)
    raise AssertionError(f"the source kept changing over {ATTEMPTS} tries")
