"""Normalized events -> absolute per-window aggregates (one stateful query, one state per window).

Plan: the event's minute (the 1-minute window start) is the event-time column the watermark is
declared on. `dropDuplicates(dkey, minute)` keeps each source row (and each session's cart) once
however often Debezium or the consumer redelivers it; having the minute in the key lets Spark
evict the keys once the watermark passes. Each kept row is then copied per window width (10 s,
1 min) and counted in one or two groups (see instashop.live.metrics.Aggregate); a single `groupBy`
keyed by (minute, width, window start, group) keeps the running values, and the minute in that key
evicts a minute's windows of both widths together. In update mode every batch emits the groups it
changed with their whole-window values, which the sink writes as absolute values: replaying a
batch writes the same numbers again.

State cost: one dedup key per event of the watermark's span (Spark scans them all each batch to
evict) plus one row per group of the open windows; see the app's --watermark.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instashop.live import metrics as live_metrics

# Approximate distinct customers: HyperLogLog++ at its default ~5 % relative standard error keeps
# each group's buffer at ~0.4 KiB (2 % would be ~3 KiB for every group of every open window).
_CUSTOMERS_RSD = 0.05
_ACTIVE_KINDS = ("transaction", "page_view", "search", "cart_add", "cart_remove")
_COUNT_ONLY_KINDS = ("page_view", "search", "cart_add", "cart_remove", "session_end", "cart_session")


def window_aggregates(events: DataFrame, watermark: str) -> DataFrame:
    """Columns: width, start (epoch s), grp, dim, count, amount, units, customers, name, category,
    last_event_time. `watermark` bounds lateness ("10 minutes"): older rows are dropped uncounted."""
    minute = F.timestamp_seconds(floor_seconds(F.col("event_time"), 60)).alias("minute")
    kept = events.select("*", minute).withWatermark("minute", watermark).dropDuplicates(["dkey", "minute"])
    widths = F.explode(F.array(*[F.lit(w) for w in live_metrics.WIDTHS])).alias("width")
    per_width = kept.select("*", widths).where(F.col("only_width").isNull() | (F.col("only_width") == F.col("width")))
    starts = F.when(F.col("width") == "1m", F.unix_seconds("minute")).otherwise(
        floor_seconds(F.col("event_time"), live_metrics.WIDTHS["10s"])
    )
    grouped = per_width.select("*", starts.alias("start"), F.explode(_groups()).alias("g"))
    return (
        grouped.groupBy("minute", "width", "start", F.col("g.grp").alias("grp"), F.col("g.dim").alias("dim"))
        .agg(
            F.count(F.lit(1)).alias("count"),
            F.sum("amount").alias("amount"),
            F.sum("units").alias("units"),
            F.approx_count_distinct("customer_id", _CUSTOMERS_RSD).alias("customers"),
            F.max("product_name").alias("name"),
            F.max("category").alias("category"),
            F.max("event_time").alias("last_event_time"),
        )
        .drop("minute")
    )


def floor_seconds(moment: Column, seconds: int) -> Column:
    """Epoch seconds of the start of the `seconds`-wide window holding `moment`."""
    epoch = F.unix_seconds(moment)
    return epoch - F.pmod(epoch, F.lit(seconds))


def _groups() -> Column:
    """The groups (grp, dim) an event counts in."""
    kind = F.col("kind")

    def group(grp: str, dim: Column | str = "") -> Column:
        return F.struct(F.lit(grp).alias("grp"), (dim if isinstance(dim, Column) else F.lit(dim)).alias("dim"))

    event = group("event", kind)
    return (
        F.when(kind == "transaction", F.array(group("transactions"), group("active")))
        .when(
            kind == "item",
            F.array(group("category", F.col("category")), group("product", F.col("product_id").cast("string"))),
        )
        .when(kind.isin(*_ACTIVE_KINDS), F.array(event, group("active")))
        .when(kind.isin(*_COUNT_ONLY_KINDS), F.array(event))
        .when(kind == "malformed", F.array(group("malformed", F.col("topic"))))
    )
