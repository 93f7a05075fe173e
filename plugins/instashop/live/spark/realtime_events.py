"""Kafka records -> one normalized event per business row (or a `malformed` marker), in Spark SQL.

Inputs: Debezium's CDC topics `<prefix>.public.<table>` (JSON without schemas, decimals as exact
strings, timestamptz as ISO-8601 UTC strings) and the consumer's enriched transaction items
(instashop.warehouse, _UPSERT_EVENTS). One JSON schema covers both, so each record is parsed once.

Which changes count (each row once, by its key; the aggregation drops repeats of a key):
- transactions, page_views, searches, cart_events: creates and snapshot reads (`c`, `r`). Updates
  (a transaction's status) and deletes (their `before` holds only the key) are not new events.
- sessions: any change that carries `ended_at` is the visit's end (`session_end`).
- transaction items come from the enriched topic only (they carry product name and category);
  the consumer publishes an item when it writes it, twice at worst after a crash.
Tombstones and truncates are skipped. A record that is not JSON, has an unknown op, or lacks a
required field or has one of the wrong type (an amount that is not an exact decimal, a time that
is not ISO-8601) becomes kind `malformed`, timed by its Kafka timestamp, and is only counted.
No Python UDFs: everything stays in the JVM (and Real-time Mode's operator allowlist).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from instashop.live import metrics as live_metrics

# Source tables of the live metrics (customers and products only enrich; the items topic has names).
TABLES = ("transactions", "page_views", "searches", "cart_events", "sessions")
ITEMS = "items"

_AFTER = T.StructType(
    [
        T.StructField(name, dtype)
        for name, dtype in (
            ("transaction_id", T.LongType()),
            ("page_view_id", T.LongType()),
            ("search_id", T.LongType()),
            ("cart_event_id", T.LongType()),
            ("session_id", T.StringType()),
            ("customer_id", T.LongType()),
            ("action", T.StringType()),
            ("total_amount", T.StringType()),
            ("created_at", T.StringType()),
            ("viewed_at", T.StringType()),
            ("searched_at", T.StringType()),
            ("ended_at", T.StringType()),
        )
    ]
)
_VALUE = T.StructType(
    [
        T.StructField("op", T.StringType()),
        T.StructField("after", _AFTER),
        # the enriched item (top level)
        T.StructField("event_key", T.StringType()),
        T.StructField("event_time", T.StringType()),
        T.StructField("product_id", T.LongType()),
        T.StructField("product_name", T.StringType()),
        T.StructField("category", T.StringType()),
        T.StructField("quantity", T.LongType()),
        T.StructField("amount", T.StringType()),
    ]
)
# numeric(12,2) as Debezium (decimal.handling.mode=string) and the consumer write it.
_MONEY = r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$"
_OPS = ("c", "r", "u", "d", "t", "m")

EVENT_COLUMNS = (
    "kind",
    "dkey",
    "event_time",
    "customer_id",
    "session_id",
    "amount",
    "units",
    "product_id",
    "product_name",
    "category",
    "topic",
    "only_width",
)


def cdc_topics(topic_prefix: str) -> list[str]:
    return [f"{topic_prefix}.public.{table}" for table in TABLES]


def events(kafka: DataFrame, items_topic: str) -> DataFrame:
    """Kafka source rows -> EVENT_COLUMNS; a cart add also yields one `cart_session` row per width."""
    parsed = kafka.where(F.col("value").isNotNull()).select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_time"),
        F.when(F.col("topic") == items_topic, F.lit(ITEMS))
        .otherwise(F.substring_index("topic", ".", -1))
        .alias("table"),
        F.from_json(F.col("value").cast("string"), _VALUE).alias("v"),
    )
    # One step per derived column, each referenced by name: inlining the CASE expressions into each
    # other makes plans that take seconds to optimize (the streaming engine plans every batch).
    typed = parsed.select("*", *_fields()).select("*", _kind().alias("candidate"))
    candidate = F.col("candidate")
    valid = typed.select("*", F.when(~_complete(candidate), "malformed").otherwise(candidate).alias("kind"))
    flat = valid.where(F.col("kind").isNotNull()).select(*_event())
    # A cart add also stands for its session's cart in the window of each width (counted once there).
    same = F.struct(F.col("kind"), F.col("dkey"), F.lit(None).cast("string").alias("only_width"))
    carts = [_cart_session(width, seconds) for width, seconds in live_metrics.WIDTHS.items()]
    copies = F.when(F.col("kind") == "cart_add", F.array(same, *carts)).otherwise(F.array(same))
    others = [c for c in EVENT_COLUMNS if c not in ("kind", "dkey", "only_width")]
    return flat.select(*others, F.explode(copies).alias("x")).select("x.kind", "x.dkey", *others, "x.only_width")


def _fields() -> list[Column]:
    """The row's columns, typed leniently: a wrong type becomes null (and the row malformed)."""
    a, v, table = F.col("v.after"), F.col("v"), F.col("table")
    time_text = (
        F.when(table == ITEMS, v.event_time)
        .when(table == "page_views", a.viewed_at)
        .when(table == "searches", a.searched_at)
        .when(table == "sessions", a.ended_at)
        .otherwise(a.created_at)
    )
    amount_text = F.when(table == ITEMS, v.amount).when(table == "transactions", a.total_amount)
    key_id = (
        F.when(table == "transactions", a.transaction_id)
        .when(table == "page_views", a.page_view_id)
        .when(table == "searches", a.search_id)
        .when(table == "cart_events", a.cart_event_id)
    )
    return [
        F.when(table == ITEMS, v.event_key)
        .when(table == "sessions", F.concat(F.lit("sessions:"), a.session_id))
        .otherwise(F.concat(table, F.lit(":"), key_id.cast("string")))
        .alias("row_key"),
        time_text.try_cast("timestamp").alias("row_time"),
        F.when(amount_text.rlike(_MONEY), amount_text.try_cast("decimal(12,2)")).alias("row_amount"),
    ]


def _kind() -> Column:
    """What the record is; null for changes that are no new event (skipped silently)."""
    op, table, after = F.col("v.op"), F.col("table"), F.col("v.after")
    created = op.isin("c", "r")
    return (
        F.when(F.col("v").isNull(), "malformed")
        .when(table == ITEMS, "item")
        .when(op.isNull() | ~op.isin(*_OPS), "malformed")
        .when(~created & (table != "sessions"), None)
        .when(table == "transactions", "transaction")
        .when(table == "page_views", "page_view")
        .when(table == "searches", "search")
        .when((table == "cart_events") & (after.action == "add"), "cart_add")
        .when((table == "cart_events") & (after.action == "remove"), "cart_remove")
        .when(table == "cart_events", "malformed")
        .when((table == "sessions") & op.isin("c", "r", "u") & after.ended_at.isNotNull(), "session_end")
    )


def _complete(kind: Column) -> Column:
    """Every field the kind's metrics need is present and well typed."""
    base = F.col("row_key").isNotNull() & F.col("row_time").isNotNull()
    v, after = F.col("v"), F.col("v.after")
    return (
        F.when(kind.isNull() | (kind == "malformed"), True)
        .when(kind == "transaction", base & F.col("row_amount").isNotNull() & after.customer_id.isNotNull())
        .when(
            kind == "item", base & F.col("row_amount").isNotNull() & v.product_id.isNotNull() & v.quantity.isNotNull()
        )
        .when(kind.startswith("cart_"), base & after.session_id.isNotNull())
        .otherwise(base)
    )


def _event() -> list[Column]:
    malformed = F.col("kind") == "malformed"
    v, after = F.col("v"), F.col("v.after")
    return [
        F.col("kind"),
        F.when(malformed, F.concat_ws(":", F.lit("malformed"), "topic", "partition", "offset"))
        .otherwise(F.col("row_key"))
        .alias("dkey"),
        F.when(malformed, F.col("kafka_time")).otherwise(F.col("row_time")).alias("event_time"),
        after.customer_id.alias("customer_id"),
        after.session_id.alias("session_id"),
        F.col("row_amount").alias("amount"),
        v.quantity.alias("units"),
        v.product_id.alias("product_id"),
        v.product_name.alias("product_name"),
        F.coalesce(v.category, F.lit("unknown")).alias("category"),
        F.col("topic"),
    ]


def _cart_session(width: str, seconds: int) -> Column:
    """(kind, dkey, only_width) of a cart add's session cart in its window of `width`."""
    start = F.unix_seconds("event_time") - F.pmod(F.unix_seconds("event_time"), F.lit(seconds))
    key = F.concat_ws(":", F.lit("cart_session"), F.lit(width), F.col("session_id"), start.cast("string"))
    return F.struct(F.lit("cart_session").alias("kind"), key.alias("dkey"), F.lit(width).alias("only_width"))
