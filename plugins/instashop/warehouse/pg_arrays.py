"""PostgreSQL array literals for large id lists passed as one query parameter.

psycopg2 adapts a Python list item by item into `ARRAY[...]`: for the thousands of ids a consumer
batch passes, that costs 3-10x more than formatting the literal (`'{...}'`) once. Cast the
parameter in SQL (`%s::integer[]`, `%s::varchar[]`).
"""

from __future__ import annotations

from collections.abc import Iterable


def int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Iterable[str]) -> str:
    """Every element quoted (so "NULL" stays a string), its backslashes and quotes escaped."""
    return "{" + ",".join(map(_quoted, values)) + "}"


def _quoted(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'
