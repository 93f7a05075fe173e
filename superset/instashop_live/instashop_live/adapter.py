"""The Redis `live:` metrics as SQL tables, for Superset's live charts (a shillelagh adapter).

Superset reaches it through the database `shillelagh+safe://` whose extra limits shillelagh to this
adapter (`engine_params.adapters = ["instashop_live"]`); superset_config.py adds the Redis URL
(`adapter_kwargs.instashop_live.redis_url`) from .env. Every query reads Redis afresh through the
readers of `instashop.live.metrics`, the one module that knows the key schema: nothing here names a
key. Tables (each covers a fixed span ending now, so the charts need no time filter):

| table                 | one row per                       | span                   |
| --------------------- | --------------------------------- | ---------------------- |
| live_windows_10s      | 10-second window: totals, rates   | the last 5 minutes     |
| live_windows_1m       | 1-minute window: totals, rates    | the last 60 minutes    |
| live_categories_10s   | category of a 10-second window    | the last 5 minutes     |
| live_top_products     | product of the stored ranking     | its 5 minutes          |
| live_heartbeat        | the Spark app's heartbeat (0 or 1)| now                    |

Money comes as REAL: SQLite has no exact decimal, and charts draw floats anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis
from shillelagh.adapters.base import Adapter
from shillelagh.fields import DateTime, Field, Float, Integer, String
from shillelagh.filters import Filter
from shillelagh.typing import RequestedOrder, Row

from instashop.live import metrics as live_metrics

# Width and span (seconds) of the window tables; the span includes the window in progress.
WINDOW_TABLES = {"live_windows_10s": ("10s", 300), "live_windows_1m": ("1m", 3600)}
CATEGORY_TABLES = {"live_categories_10s": ("10s", 300)}
TOP_PRODUCTS = "live_top_products"
HEARTBEAT = "live_heartbeat"
TABLES = (*WINDOW_TABLES, *CATEGORY_TABLES, TOP_PRODUCTS, HEARTBEAT)

_WINDOW_COLUMNS: dict[str, Field] = {
    "window_start": DateTime(),
    "window_end": DateTime(),
    "transactions": Integer(),
    "revenue": Float(),
    "avg_ticket": Float(),
    **{name: Integer() for name in live_metrics.COUNT_FIELDS if name != "transactions"},
    "malformed": Integer(),
    "conversion_rate": Float(),
    "cart_abandonment_rate": Float(),
}
_CATEGORY_COLUMNS: dict[str, Field] = {
    "window_start": DateTime(),
    "category": String(),
    "revenue": Float(),
    "units": Integer(),
}
_COLUMNS: dict[str, dict[str, Field]] = {
    **{table: _WINDOW_COLUMNS for table in WINDOW_TABLES},
    **{table: _CATEGORY_COLUMNS for table in CATEGORY_TABLES},
    TOP_PRODUCTS: {
        "rank": Integer(),
        "product_id": Integer(),
        "name": String(),
        "category": String(),
        "product": String(),  # "<name> #<id>": names need not be unique
        "revenue": Float(),
        "units": Integer(),
        "ranking_from": DateTime(),
        "ranking_until": DateTime(),
    },
    HEARTBEAT: {
        "status": String(),
        "mode": String(),
        "pid": Integer(),
        "batch_id": Integer(),
        "input_rows_per_second": Float(),
        "processed_rows_per_second": Float(),
        "batch_duration_ms": Float(),
        "last_event_time": DateTime(),
        "watermark": DateTime(),
        "started_at": DateTime(),
        "updated_at": DateTime(),
        "age_seconds": Float(),
        "error": String(),
    },
}


def span_start(width: str, span: int, now: float) -> int:
    """Start of the oldest window of a table: the `span / width` windows up to the one holding `now`."""
    return live_metrics.window_start(now, width) - span + live_metrics.WIDTHS[width]


def window_rows(
    client: Any, width: str, span: int, now: float, prefix: str = live_metrics.PREFIX
) -> list[dict[str, Any]]:
    windows = live_metrics.read_windows(client, width, span_start(width, span, now), prefix=prefix)
    return [
        {
            "window_start": _datetime(w["start_time"]),
            "window_end": _datetime(w["end_time"]),
            **{name: _number(w.get(name)) for name in _WINDOW_COLUMNS if name not in ("window_start", "window_end")},
        }
        for w in windows
    ]


def category_rows(
    client: Any, width: str, span: int, now: float, prefix: str = live_metrics.PREFIX
) -> list[dict[str, Any]]:
    windows = live_metrics.read_windows(client, width, span_start(width, span, now), prefix=prefix)
    return [
        {
            "window_start": _datetime(w["start_time"]),
            "category": category,
            "revenue": float(v["revenue"]),
            "units": v["units"],
        }
        for w in windows
        for category, v in w["categories"].items()
    ]


def top_product_rows(client: Any, prefix: str = live_metrics.PREFIX) -> list[dict[str, Any]]:
    ranking = live_metrics.read_top_products(client, prefix=prefix)
    if not ranking:
        return []
    since, until = _datetime(ranking["from"]), _datetime(ranking["until"])
    return [
        {
            "rank": rank,
            "product_id": p["product_id"],
            "name": p["name"],
            "category": p["category"],
            "product": f"{p['name']} #{p['product_id']}",
            "revenue": float(p["revenue"]),
            "units": p["units"],
            "ranking_from": since,
            "ranking_until": until,
        }
        for rank, p in enumerate(ranking["products"], start=1)
    ]


def heartbeat_rows(client: Any, prefix: str = live_metrics.PREFIX) -> list[dict[str, Any]]:
    beat = live_metrics.read_heartbeat(client, prefix=prefix)
    if beat is None:
        return []
    parsers: dict[type, Callable[[str], Any]] = {Integer: int, Float: float, DateTime: _datetime, String: str}
    row = {}
    for name, field in _COLUMNS[HEARTBEAT].items():
        value = beat.get(name)
        row[name] = None if value in (None, "") else parsers[type(field)](value)
    return [row]


class LiveMetricsAdapter(Adapter):
    """One of the TABLES, read from Redis on each query."""

    safe = True  # no file system, no arbitrary URLs: only the Redis of the configured URL
    supports_limit = False
    supports_offset = False
    supports_requested_columns = False

    # prefix: another key namespace under `live:` (live_metrics' `prefix`), e.g. a test's or a dev's.
    def __init__(self, table: str, redis_url: str, prefix: str = live_metrics.PREFIX) -> None:
        super().__init__()
        self.table = table
        self.prefix = prefix
        # decode_responses: the readers take either kind of client; str keeps the rows simple.
        self.client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)

    @staticmethod
    def supports(uri: str, fast: bool = True, **kwargs: Any) -> bool:
        return uri in TABLES

    @staticmethod
    def parse_uri(uri: str) -> tuple[str]:
        return (uri,)

    def get_columns(self) -> dict[str, Field]:
        return _COLUMNS[self.table]

    def get_data(
        self, bounds: dict[str, Filter], order: list[tuple[str, RequestedOrder]], **kwargs: Any
    ) -> Iterator[Row]:
        for rowid, row in enumerate(self._rows()):
            yield {"rowid": rowid, **row}

    def _rows(self) -> list[dict[str, Any]]:
        now, client, prefix = time.time(), self.client, self.prefix
        if self.table in WINDOW_TABLES:
            return window_rows(client, *WINDOW_TABLES[self.table], now, prefix=prefix)
        if self.table in CATEGORY_TABLES:
            return category_rows(client, *CATEGORY_TABLES[self.table], now, prefix=prefix)
        if self.table == TOP_PRODUCTS:
            return top_product_rows(client, prefix=prefix)
        return heartbeat_rows(client, prefix=prefix)

    def close(self) -> None:
        self.client.close()


def _number(value: Any) -> Any:
    """Decimals (money) as float for SQLite; ints and None as they are."""
    return float(value) if isinstance(value, Decimal) else value


def _datetime(moment: datetime | str) -> datetime:
    """A time of live_metrics (UTC, maybe ISO-8601 text) as naive UTC, as Superset reads SQLite times."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return (moment.astimezone(UTC) if moment.tzinfo else moment).replace(tzinfo=None)
