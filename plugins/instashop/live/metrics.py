"""The Redis `live:` key schema of the real-time metrics: key names, value encodings, TTLs.

The one place that knows how live metrics sit in Redis. The Spark app (live/spark/) writes through
`commands`/`apply`; readers (tests, the Airflow reconciliation DAG, Superset's shillelagh adapter)
use `read_window`, `read_windows`, `top_products`, `read_heartbeat`. Standard library only at
module level: it is imported inside Superset's own venv, whose only Redis client is redis-py 5.x.
Functions take any redis-py client (bytes or `decode_responses=True`), and return plain dicts.

Keys (`<start>` = window start in epoch seconds UTC, a multiple of the width; `<width>` = 10s | 1m):

| key                                   | type | content                                         | TTL    |
| ------------------------------------- | ---- | ----------------------------------------------- | ------ |
| live:totals:<width>:<start>           | HASH | counters of the window, see TOTAL_FIELDS        | W      |
| live:category_revenue:<width>:<start> | HASH | category -> revenue (decimal string)            | W      |
| live:category_units:<width>:<start>   | HASH | category -> units sold (integer)                | W      |
| live:product_revenue:<width>:<start>  | ZSET | product id -> revenue in cents (integer score)  | W      |
| live:product_units:<width>:<start>    | HASH | product id -> units sold (integer)              | W      |
| live:index:<width>                    | ZSET | window start -> window start (windows present)  | W      |
| live:products                         | HASH | product id -> JSON {"name", "category"}         | 48 h   |
| live:top_products:5m                  | STR  | JSON, see `refresh_top_products` (every ~2 s)   | 5 min  |
| live:heartbeat                        | HASH | the Spark app's progress, see HEARTBEAT_FIELDS  | 10 min |

W: 6 h for 10s windows, 48 h for 1m windows, counted from the window's last update. The heartbeat's
`updated_at` moves every second while the app runs; it stops when the app is down or its query has
shown no progress for 3 minutes (stuck), which is what a supervisor restarts it for.

Encodings: integers as decimal strings; money as exact decimal strings with two places ("1234.50",
never a float); product revenue scores are integer cents (exact in a double below 2**53), so a
ZUNION of windows still sums exactly. Times in JSON and the heartbeat are ISO-8601 UTC.

Semantics (all by event time, each source row counted once by its key, windows closed by the
Spark watermark; later values of a window are absolute, never increments, so replays are no-ops):
- transactions / revenue: orders placed (transactions rows, by `created_at`, `total_amount` as
  created). Status changes and deletes don't change them (see the app's docstring).
- avg_ticket: revenue / transactions, rounded half-even to cents (the only rounded money value).
- buyers, active_customers: approximate distinct customers (HyperLogLog++, ~5 % standard error)
  with an order / with any page view, search, cart event or order in the window.
- page_views, searches, cart_adds, cart_removes: rows of those tables in the window.
- sessions_ended: sessions whose `ended_at` falls in the window. carts: distinct sessions with at
  least one cart `add` in the window (exact).
- category and product revenue/units: enriched transaction items, by the item's `created_at`.
- malformed:<topic>: records of that topic the app could not use, by Kafka timestamp.
Derived when read (never stored, so they cannot disagree with the counters they come from):
- conversion_rate = transactions / sessions_ended (share of visits ending in the window that
  ordered; an order is placed shortly before its visit ends).
- cart_abandonment_rate = 1 - transactions / carts, clamped to [0, 1] (share of carts not ordered,
  Baymard's definition applied per window).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

PREFIX = "live"
WIDTHS: dict[str, int] = {"10s": 10, "1m": 60}
WIDTH_TTL_SECONDS: dict[str, int] = {"10s": 6 * 3600, "1m": 48 * 3600}
PRODUCTS_TTL_SECONDS = 48 * 3600
TOP_PRODUCTS_TTL_SECONDS = 300
HEARTBEAT_TTL_SECONDS = 600
TOP_PRODUCTS_MINUTES = 5
TOP_PRODUCTS_LIMIT = 10
# The top-products ranking is made of 10-second windows: a 5-minute span slides every 10 s.
TOP_PRODUCTS_WIDTH = "10s"

TOTALS = "totals"
CATEGORY_REVENUE = "category_revenue"
CATEGORY_UNITS = "category_units"
PRODUCT_REVENUE = "product_revenue"
PRODUCT_UNITS = "product_units"
METRICS = (TOTALS, CATEGORY_REVENUE, CATEGORY_UNITS, PRODUCT_REVENUE, PRODUCT_UNITS)

MONEY_FIELDS = ("revenue", "avg_ticket")
COUNT_FIELDS = (
    "transactions",
    "buyers",
    "active_customers",
    "page_views",
    "searches",
    "cart_adds",
    "cart_removes",
    "sessions_ended",
    "carts",
)
TOTAL_FIELDS = (*COUNT_FIELDS[:1], *MONEY_FIELDS, *COUNT_FIELDS[1:])
MALFORMED_PREFIX = "malformed:"
# Event kinds of the app's "event" group -> their totals field.
EVENT_FIELDS = {
    "page_view": "page_views",
    "search": "searches",
    "cart_add": "cart_adds",
    "cart_remove": "cart_removes",
    "session_end": "sessions_ended",
    "cart_session": "carts",
}
HEARTBEAT_FIELDS = (
    "status",  # starting | running | stopping | stopped | failed
    "mode",  # micro-batch | real-time
    "pid",
    "query_id",
    "run_id",
    "batch_id",
    "input_rows_per_second",
    "processed_rows_per_second",
    "batch_duration_ms",
    "last_event_time",
    "watermark",
    "late_rows",  # rows dropped for arriving after the watermark, since the process started
    "started_at",
    "updated_at",
    "error",
)

CENT = Decimal("0.01")


# --- keys ------------------------------------------------------------------------------------------


def _check(prefix: str, width: str | None = None) -> None:
    if prefix != PREFIX and not prefix.startswith(PREFIX + ":"):
        raise ValueError(f"key prefix {prefix!r} must be {PREFIX!r} or start with '{PREFIX}:'")
    if width is not None and width not in WIDTHS:
        raise ValueError(f"unknown window width {width!r} (expected one of {', '.join(WIDTHS)})")


def window_key(metric: str, width: str, start: int, prefix: str = PREFIX) -> str:
    """The key of one metric of one window, e.g. `live:totals:10s:1795813340`."""
    _check(prefix, width)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (expected one of {', '.join(METRICS)})")
    if start % WIDTHS[width]:
        raise ValueError(f"{start} is not the start of a {width} window")
    return f"{prefix}:{metric}:{width}:{start}"


def parse_window_key(key: str | bytes, prefix: str = PREFIX) -> tuple[str, str, int]:
    """(metric, width, start) of a window key; ValueError if it is not one."""
    text = _text(key)
    head, _, rest = text.partition(prefix + ":")
    parts = rest.split(":")
    if head or len(parts) != 3 or parts[0] not in METRICS or parts[1] not in WIDTHS or not parts[2].isdigit():
        raise ValueError(f"{text!r} is not a window key under {prefix!r}")
    return parts[0], parts[1], int(parts[2])


def index_key(width: str, prefix: str = PREFIX) -> str:
    _check(prefix, width)
    return f"{prefix}:index:{width}"


def products_key(prefix: str = PREFIX) -> str:
    _check(prefix)
    return f"{prefix}:products"


def top_products_key(prefix: str = PREFIX) -> str:
    _check(prefix)
    return f"{prefix}:top_products:{TOP_PRODUCTS_MINUTES}m"


def heartbeat_key(prefix: str = PREFIX) -> str:
    _check(prefix)
    return f"{prefix}:heartbeat"


def window_start(moment: datetime | float | int, width: str) -> int:
    """Start (epoch seconds) of the `width` window holding `moment` (naive datetimes are UTC)."""
    seconds = WIDTHS[width]
    epoch = _epoch(moment)
    return int(epoch // seconds * seconds)


# --- encodings -------------------------------------------------------------------------------------


def encode_money(amount: Decimal) -> str:
    """Exact two-place decimal string; refuses amounts with fractions of a cent."""
    quantized = amount.quantize(CENT)
    if quantized != amount:
        raise ValueError(f"{amount} has fractions of a cent")
    return str(quantized)


def decode_money(raw: str | bytes | None) -> Decimal | None:
    return None if raw is None else Decimal(_text(raw))


def to_cents(amount: Decimal) -> int:
    return int(Decimal(encode_money(amount)).scaleb(2))


def from_cents(score: float | int) -> Decimal:
    return Decimal(round(score)).scaleb(-2).quantize(CENT)


def average_ticket(revenue: Decimal, transactions: int) -> Decimal | None:
    return (revenue / transactions).quantize(CENT, ROUND_HALF_EVEN) if transactions else None


# --- writing (the Spark app) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """One aggregated row of the Spark query: a group of one window, with absolute values.

    group/dim: transactions/"", active/"", event/<kind of EVENT_FIELDS>, category/<category>,
    product/<product id>, malformed/<topic>.
    """

    width: str
    start: int
    group: str
    dim: str
    count: int
    amount: Decimal | None = None
    units: int | None = None
    customers: int | None = None  # approximate distinct customers
    name: str | None = None  # product name
    category: str | None = None  # product category


# A write: ("hset", key, {field: value}) | ("zadd", key, {member: score}) | ("expire", key, seconds)
Command = tuple[str, str, Any]


def commands(aggregates: Iterable[Aggregate], prefix: str = PREFIX) -> list[Command]:
    """The Redis writes of a set of aggregates: absolute values, so writing twice changes nothing."""
    writes: list[Command] = []
    ttls: dict[str, int] = {}
    for agg in aggregates:
        for command in _writes(agg, prefix):
            writes.append(command)
            ttls[command[1]] = max(ttls.get(command[1], 0), _ttl_of(command[1], agg.width, prefix))
        index = index_key(agg.width, prefix)
        writes.append(("zadd", index, {str(agg.start): agg.start}))
        ttls[index] = WIDTH_TTL_SECONDS[agg.width]
    writes.extend(("expire", key, seconds) for key, seconds in ttls.items())
    return writes


def _ttl_of(key: str, width: str, prefix: str) -> int:
    return PRODUCTS_TTL_SECONDS if key == products_key(prefix) else WIDTH_TTL_SECONDS[width]


def _writes(agg: Aggregate, prefix: str) -> list[Command]:
    def key(metric: str) -> str:
        return window_key(metric, agg.width, agg.start, prefix)

    amount = agg.amount if agg.amount is not None else Decimal(0)
    if agg.group == "transactions":
        fields = {"transactions": agg.count, "revenue": encode_money(amount), "buyers": agg.customers or 0}
        fields["avg_ticket"] = encode_money(average_ticket(amount, agg.count) or Decimal(0))
        return [("hset", key(TOTALS), fields)]
    if agg.group == "active":
        return [("hset", key(TOTALS), {"active_customers": agg.customers or 0})]
    if agg.group == "event":
        return [("hset", key(TOTALS), {EVENT_FIELDS[agg.dim]: agg.count})]
    if agg.group == "malformed":
        return [("hset", key(TOTALS), {MALFORMED_PREFIX + agg.dim: agg.count})]
    if agg.group == "category":
        return [
            ("hset", key(CATEGORY_REVENUE), {agg.dim: encode_money(amount)}),
            ("hset", key(CATEGORY_UNITS), {agg.dim: agg.units or 0}),
        ]
    if agg.group == "product":
        info = json.dumps({"name": agg.name, "category": agg.category}, ensure_ascii=False)
        return [
            ("zadd", key(PRODUCT_REVENUE), {agg.dim: to_cents(amount)}),
            ("hset", key(PRODUCT_UNITS), {agg.dim: agg.units or 0}),
            ("hset", products_key(prefix), {agg.dim: info}),
        ]
    raise ValueError(f"unknown aggregate group {agg.group!r}")


def apply(pipe, writes: Iterable[Command]) -> None:
    """Queue writes on a redis-py pipeline (the caller executes it)."""
    for name, key, arg in writes:
        if name == "hset":
            pipe.hset(key, mapping=arg)
        elif name == "zadd":
            pipe.zadd(key, arg)
        elif name == "expire":
            pipe.expire(key, arg)
        else:
            raise ValueError(f"unknown write {name!r}")


def refresh_top_products(client, now: datetime | float | None = None, prefix: str = PREFIX) -> dict[str, Any]:
    """Store the top products of the 5 minutes up to `now` (default: the clock) at top_products_key."""
    until = window_start(time.time() if now is None else now, TOP_PRODUCTS_WIDTH) + WIDTHS[TOP_PRODUCTS_WIDTH]
    ranking = {
        "from": _iso(until - TOP_PRODUCTS_MINUTES * 60),
        "until": _iso(until),
        "products": [_jsonable(p) for p in top_products(client, until, prefix=prefix)],
    }
    client.set(top_products_key(prefix), json.dumps(ranking, ensure_ascii=False), ex=TOP_PRODUCTS_TTL_SECONDS)
    return ranking


def write_heartbeat(client, fields: Mapping[str, Any], prefix: str = PREFIX) -> None:
    """Merge fields into the heartbeat (None values become empty strings), stamped `updated_at`."""
    values = {k: "" if v is None else str(v) for k, v in fields.items()}
    values["updated_at"] = _iso(time.time())
    pipe = client.pipeline(transaction=False)
    pipe.hset(heartbeat_key(prefix), mapping=values)
    pipe.expire(heartbeat_key(prefix), HEARTBEAT_TTL_SECONDS)
    pipe.execute()


# --- reading ----------------------------------------------------------------------------------------


def derive(totals: Mapping[str, Any]) -> dict[str, Any]:
    """Typed totals (ints, exact Decimals) plus the malformed sum and the two live rates."""
    out: dict[str, Any] = {f: int(totals.get(f) or 0) for f in COUNT_FIELDS}
    out["revenue"] = decode_money(totals.get("revenue")) or Decimal("0.00")
    out["avg_ticket"] = decode_money(totals.get("avg_ticket")) if out["transactions"] else None
    malformed = {k[len(MALFORMED_PREFIX) :]: int(v) for k, v in totals.items() if k.startswith(MALFORMED_PREFIX)}
    out["malformed"] = sum(malformed.values())
    out["malformed_by_topic"] = malformed
    tx, ended, carts = out["transactions"], out["sessions_ended"], out["carts"]
    out["conversion_rate"] = round(tx / ended, 4) if ended else None
    out["cart_abandonment_rate"] = round(min(1.0, max(0.0, 1 - tx / carts)), 4) if carts else None
    return out


def read_window(client, width: str, start: int, prefix: str = PREFIX) -> dict[str, Any] | None:
    """One window with its totals, derived rates and categories; None if Redis has nothing for it."""
    windows = _read(client, width, [start], prefix)
    return windows[0] if windows else None


def read_windows(
    client, width: str, since: datetime | float, until: datetime | float | None = None, prefix: str = PREFIX
) -> list[dict[str, Any]]:
    """The windows starting in [since, until) that Redis holds, oldest first (see `read_window`)."""
    high = "+inf" if until is None else f"({_epoch(until)}"
    starts = [int(float(_text(s))) for s in client.zrangebyscore(index_key(width, prefix), _epoch(since), high)]
    return _read(client, width, starts, prefix)


def _read(client, width: str, starts: list[int], prefix: str) -> list[dict[str, Any]]:
    pipe = client.pipeline(transaction=False)
    for start in starts:
        for metric in (TOTALS, CATEGORY_REVENUE, CATEGORY_UNITS):
            pipe.hgetall(window_key(metric, width, start, prefix))
    replies = pipe.execute()
    windows = []
    for i, start in enumerate(starts):
        totals, revenue, units = (_decoded(r) for r in replies[3 * i : 3 * i + 3])
        if not (totals or revenue):
            continue  # expired meanwhile
        window = {"width": width, "start": start, "start_time": _datetime(start), **derive(totals)}
        window["end_time"] = _datetime(start + WIDTHS[width])
        window["categories"] = {
            c: {"revenue": Decimal(r), "units": int(units.get(c, 0))} for c, r in sorted(revenue.items())
        }
        windows.append(window)
    return windows


def top_products(
    client,
    until: datetime | float,
    minutes: int = TOP_PRODUCTS_MINUTES,
    limit: int = TOP_PRODUCTS_LIMIT,
    prefix: str = PREFIX,
) -> list[dict[str, Any]]:
    """Products by revenue over the 10-second windows in [until - minutes, until), best first.

    Each: product_id, name, category, revenue (exact Decimal), units. Ties break by product id.
    """
    width, step = TOP_PRODUCTS_WIDTH, WIDTHS[TOP_PRODUCTS_WIDTH]
    end = window_start(until, width) if _epoch(until) % step == 0 else window_start(until, width) + step
    starts = range(end - minutes * 60, end, step)
    scores = client.zunion([window_key(PRODUCT_REVENUE, width, s, prefix) for s in starts], withscores=True)
    best = sorted(((_text(m), round(s)) for m, s in scores), key=lambda p: (-p[1], _id_order(p[0])))[:limit]
    if not best:
        return []
    pipe = client.pipeline(transaction=False)
    pipe.hmget(products_key(prefix), [pid for pid, _ in best])
    for s in starts:
        pipe.hmget(window_key(PRODUCT_UNITS, width, s, prefix), [pid for pid, _ in best])
    infos, *units = pipe.execute()
    ranking = []
    for i, (pid, cents) in enumerate(best):
        info = json.loads(_text(infos[i])) if infos[i] else {}
        sold = sum(int(row[i]) for row in units if row[i] is not None)
        ranking.append(
            {
                "product_id": int(pid) if pid.isdigit() else pid,
                "name": info.get("name"),
                "category": info.get("category"),
                "revenue": from_cents(cents),
                "units": sold,
            }
        )
    return ranking


def read_top_products(client, prefix: str = PREFIX) -> dict[str, Any] | None:
    """The ranking the app stored last (revenue as exact decimal strings), or None."""
    raw = client.get(top_products_key(prefix))
    return json.loads(_text(raw)) if raw else None


def read_heartbeat(client, prefix: str = PREFIX) -> dict[str, Any] | None:
    """The app's heartbeat with `age_seconds` since its last update; None if there is none."""
    fields: dict[str, Any] = _decoded(client.hgetall(heartbeat_key(prefix)))
    if not fields:
        return None
    updated = fields.get("updated_at")
    fields["age_seconds"] = round(time.time() - _epoch(datetime.fromisoformat(updated)), 3) if updated else None
    return fields


# --- helpers ----------------------------------------------------------------------------------------


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(mapping: Mapping) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in mapping.items()}


def _epoch(moment: datetime | float | int) -> float:
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return float(moment)


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _iso(epoch: float) -> str:
    return _datetime(epoch).isoformat()


def _id_order(member: str) -> tuple[int, str]:
    return (int(member), "") if member.isdigit() else (1 << 62, member)


def _jsonable(product: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in product.items()}
