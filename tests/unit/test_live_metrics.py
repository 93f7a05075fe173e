"""The live-metrics key schema and encodings (instashop.live.metrics), and the Spark app's parsing and
aggregation of records (plugins/instashop/live/spark/realtime_events.py, realtime_aggregation.py) run as a batch job
on a local Spark: real Debezium messages (tests/fixtures/debezium) and malformed ones, no services."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from instashop.capture import topics
from instashop.live import metrics as live_metrics
from instashop.live.metrics import Aggregate

REPO = Path(__file__).parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "debezium" / "no_schema_string_decimals.jsonl"
ITEMS_TOPIC = "instashop.enriched.transaction_items"
T0 = 1795810800  # 2026-11-27 20:20:00 UTC, a minute start


# --- keys ---------------------------------------------------------------------------------------


def test_window_keys_name_metric_width_and_start():
    assert live_metrics.window_key("totals", "10s", T0 + 50) == f"live:totals:10s:{T0 + 50}"
    assert (
        live_metrics.window_key("product_revenue", "1m", T0, prefix="live:test") == f"live:test:product_revenue:1m:{T0}"
    )
    assert live_metrics.parse_window_key(f"live:test:category_units:1m:{T0}".encode(), "live:test") == (
        "category_units",
        "1m",
        T0,
    )


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("totals", "5s", T0), {}),  # unknown width
        (("revenue", "10s", T0), {}),  # unknown metric
        (("totals", "1m", T0 + 10), {}),  # not a window start
        (("totals", "10s", T0), {"prefix": "metrics"}),  # outside live:
    ],
)
def test_window_keys_refuse_what_readers_could_not_find(args, kwargs):
    with pytest.raises(ValueError):
        live_metrics.window_key(*args, **kwargs)


def test_parse_window_key_rejects_other_keys():
    for key in ("live:heartbeat", "live:index:10s", f"live:totals:10s:{T0}:x", f"other:totals:10s:{T0}"):
        with pytest.raises(ValueError):
            live_metrics.parse_window_key(key)


def test_window_start_floors_to_the_width_in_utc():
    moment = datetime(2026, 11, 27, 20, 20, 59, 999999)
    assert live_metrics.window_start(moment, "10s") == T0 + 50
    assert live_metrics.window_start(moment.replace(tzinfo=UTC), "1m") == T0
    assert live_metrics.window_start(T0 + 9.99, "10s") == T0


def test_fixed_keys_live_under_the_prefix():
    assert live_metrics.heartbeat_key() == "live:heartbeat"
    assert live_metrics.top_products_key("live:t") == "live:t:top_products:5m"
    assert live_metrics.index_key("1m") == "live:index:1m"
    assert live_metrics.products_key() == "live:products"


# --- encodings ----------------------------------------------------------------------------------


def test_money_is_an_exact_two_place_decimal_string():
    assert live_metrics.encode_money(Decimal("1234.5")) == "1234.50"
    assert live_metrics.encode_money(Decimal("99999999999999999999.99")) == "99999999999999999999.99"
    assert live_metrics.decode_money(b"0.10") + live_metrics.decode_money("0.20") == Decimal("0.30")
    with pytest.raises(ValueError):
        live_metrics.encode_money(Decimal("0.005"))


def test_cents_round_trip_exactly_through_a_double_score():
    for amount in (Decimal("0.01"), Decimal("19.99"), Decimal("90071992547409.91")):
        cents = live_metrics.to_cents(amount)
        assert live_metrics.from_cents(float(cents)) == amount


def test_average_ticket_rounds_half_even_to_cents():
    assert live_metrics.average_ticket(Decimal("10.00"), 3) == Decimal("3.33")
    assert live_metrics.average_ticket(Decimal("0.05"), 2) == Decimal("0.02")
    assert live_metrics.average_ticket(Decimal("0.00"), 0) is None


# --- writes --------------------------------------------------------------------------------------


def _writes_by_key(aggregates, prefix="live"):
    out: dict[str, dict] = {}
    for name, key, arg in live_metrics.commands(aggregates, prefix):
        out.setdefault(key, {}).setdefault(name, {})
        if name == "expire":
            out[key]["expire"] = arg
        else:
            out[key][name].update(arg)
    return out


def test_commands_write_absolute_values_with_ttls():
    aggregates = [
        Aggregate("10s", T0, "transactions", "", count=3, amount=Decimal("100.01"), customers=2),
        Aggregate("10s", T0, "event", "cart_session", count=4),
        Aggregate("10s", T0, "malformed", "instashop.public.transactions", count=1),
        Aggregate("1m", T0, "category", "Books", count=2, amount=Decimal("25.50"), units=3),
        Aggregate("1m", T0, "product", "17", count=2, amount=Decimal("25.50"), units=3, name="Atlas", category="Books"),
    ]
    writes = _writes_by_key(aggregates, "live:t")
    totals = writes[f"live:t:totals:10s:{T0}"]
    assert totals["hset"] == {
        "transactions": 3,
        "revenue": "100.01",
        "avg_ticket": "33.34",
        "buyers": 2,
        "carts": 4,
        "malformed:instashop.public.transactions": 1,
    }
    assert totals["expire"] == live_metrics.WIDTH_TTL_SECONDS["10s"]
    assert writes[f"live:t:category_revenue:1m:{T0}"]["hset"] == {"Books": "25.50"}
    assert writes[f"live:t:category_units:1m:{T0}"]["hset"] == {"Books": 3}
    assert writes[f"live:t:product_revenue:1m:{T0}"]["zadd"] == {"17": 2550}
    assert json.loads(writes["live:t:products"]["hset"]["17"]) == {"name": "Atlas", "category": "Books"}
    assert writes["live:t:products"]["expire"] == live_metrics.PRODUCTS_TTL_SECONDS
    assert writes["live:t:index:1m"]["zadd"] == {str(T0): T0}
    assert all("expire" in w for w in writes.values()), "every key written gets a TTL"


def test_commands_are_the_same_when_a_batch_is_replayed():
    aggregates = [Aggregate("1m", T0, "transactions", "", count=1, amount=Decimal("5.00"), customers=1)]
    assert live_metrics.commands(aggregates) == live_metrics.commands(list(aggregates))
    assert not any(name.startswith("incr") for name, _, _ in live_metrics.commands(aggregates))


class _Pipe:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_apply_queues_redis_py_calls():
    pipe = _Pipe()
    live_metrics.apply(pipe, [("hset", "k", {"a": 1}), ("zadd", "z", {"m": 2}), ("expire", "k", 60)])
    assert pipe.calls == [
        ("hset", ("k",), {"mapping": {"a": 1}}),
        ("zadd", ("z", {"m": 2}), {}),
        ("expire", ("k", 60), {}),
    ]


# --- reads ---------------------------------------------------------------------------------------


def test_derive_types_counters_and_computes_the_rates():
    raw = {
        b"transactions": b"2",
        b"revenue": b"30.00",
        b"avg_ticket": b"15.00",
        b"sessions_ended": b"8",
        b"carts": b"5",
        b"malformed:a": b"1",
        b"malformed:b": b"2",
    }
    window = live_metrics.derive(live_metrics._decoded(raw))
    assert window["revenue"] == Decimal("30.00") and window["avg_ticket"] == Decimal("15.00")
    assert window["conversion_rate"] == 0.25
    assert window["cart_abandonment_rate"] == 0.6
    assert window["malformed"] == 3 and window["malformed_by_topic"] == {"a": 1, "b": 2}
    assert window["page_views"] == 0


def test_rates_are_none_without_a_denominator_and_clamped():
    assert live_metrics.derive({})["conversion_rate"] is None
    assert live_metrics.derive({})["cart_abandonment_rate"] is None
    assert live_metrics.derive({})["avg_ticket"] is None
    # an order placed in the window after its cart was added in the previous one
    assert live_metrics.derive({"transactions": "3", "carts": "2"})["cart_abandonment_rate"] == 0.0


# --- parsing and aggregation (Spark, batch mode) ------------------------------------------------


@pytest.fixture(scope="module")
def spark():
    pyspark = pytest.importorskip("pyspark.sql")
    session = (
        pyspark.SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    yield session
    session.stop()


def _records(spark, messages):
    """Rows shaped like the Kafka source's: (key, value, topic, partition, offset, timestamp)."""
    rows = [
        (
            None if m.get("key") is None else m["key"].encode(),
            None if m.get("value") is None else m["value"].encode(),
            m["topic"],
            0,
            offset,
            datetime.fromtimestamp(m.get("kafka_time", T0 + 30), UTC).replace(tzinfo=None),
            0,
        )
        for offset, m in enumerate(messages)
    ]
    schema = (
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
    )
    return spark.createDataFrame(rows, schema)


def _events(spark, messages):
    from instashop.live.spark.realtime_events import events

    return [r.asDict() for r in events(_records(spark, messages), ITEMS_TOPIC).collect()]


def _cdc(table, op, after, ts=T0):
    value = {"before": None, "after": after, "source": {"table": table, "ts_ms": ts * 1000, "lsn": 1}, "op": op}
    return {"topic": f"instashop.public.{table}", "key": "{}", "value": json.dumps(value)}


def _transaction(tid, amount, at, op="c", customer=7):
    after = {
        "transaction_id": tid,
        "customer_id": customer,
        "session_id": "s1",
        "total_amount": amount,
        "status": "pending",
        "created_at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
    }
    return _cdc("transactions", op, after)


def _item(key, amount, quantity, at, product_id=17, category="Books"):
    value = {
        "event_key": key,
        "event_time": datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat(),
        "product_id": product_id,
        "product_name": "Atlas",
        "category": category,
        "quantity": quantity,
        "amount": amount,
    }
    return {"topic": ITEMS_TOPIC, "key": key, "value": json.dumps(value)}


def _cart(event_id, session, action, at):
    after = {
        "cart_event_id": event_id,
        "session_id": session,
        "customer_id": 7,
        "action": action,
        "amount": "1.00",
        "created_at": datetime.fromtimestamp(at, UTC).isoformat(),
    }
    return _cdc("cart_events", "c", after)


def test_captured_debezium_messages_become_events(spark):
    messages = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    by_kind: dict[str, list] = {}
    for event in _events(spark, messages):
        by_kind.setdefault(event["kind"], []).append(event)
    # creates and snapshot reads count; updates, deletes, tombstones and dimension tables don't
    assert len(by_kind["transaction"]) == 4
    assert all(isinstance(e["amount"], Decimal) and e["amount"] > 0 for e in by_kind["transaction"])
    assert {e["dkey"].split(":")[0] for e in by_kind["transaction"]} == {"transactions"}
    assert len(by_kind["cart_add"]) + len(by_kind.get("cart_remove", [])) == 4
    assert len(by_kind["cart_session"]) == 2 * len(by_kind["cart_add"])  # one per width
    assert {e["only_width"] for e in by_kind["cart_session"]} == {"10s", "1m"}
    assert by_kind["session_end"] and all(e["dkey"].startswith("sessions:") for e in by_kind["session_end"])
    assert "malformed" not in by_kind


def test_a_transaction_amount_stays_exact(spark):
    [event] = _events(spark, [_transaction(1, "12345678.91", T0 + 1)])
    assert event["amount"] == Decimal("12345678.91")
    assert event["event_time"] == datetime(2026, 11, 27, 20, 20, 1)


MALFORMED = [
    {"topic": "instashop.public.transactions", "value": "not json"},
    {"topic": "instashop.public.transactions", "value": "[1, 2]"},
    _transaction(1, "12.345", T0),  # a fraction of a cent
    _transaction(1, "abc", T0),
    _transaction(1, 1e21, T0),  # a JSON number in exponent form is no exact decimal
    _cdc("transactions", "c", {"transaction_id": 1, "customer_id": 7, "total_amount": "1.00"}),  # no time
    _cdc("transactions", "c", {"transaction_id": "one", "customer_id": 7, "total_amount": "1.00", "created_at": "x"}),
    _cdc("transactions", "x", {"transaction_id": 1}),  # unknown op
    _cart(1, "s1", "explode", T0),
    _cart(1, None, "add", T0),  # no session for the carts metric
    {"topic": ITEMS_TOPIC, "value": json.dumps({"event_key": "transaction_items:1", "amount": "1.00"})},
]


def test_malformed_records_are_kept_as_malformed_markers(spark):
    events = _events(spark, [{**m, "kafka_time": T0 + 42} for m in MALFORMED])
    assert [e["kind"] for e in events] == ["malformed"] * len(MALFORMED)
    assert [e["dkey"] for e in events] == [f"malformed:{m['topic']}:0:{i}" for i, m in enumerate(MALFORMED)]
    assert {e["event_time"] for e in events} == {datetime(2026, 11, 27, 20, 20, 42)}  # the Kafka timestamp
    assert [e["topic"] for e in events] == [m["topic"] for m in MALFORMED]


def test_skipped_changes_are_not_malformed(spark):
    tombstone = {"topic": "instashop.public.transactions", "value": None}
    update = _transaction(1, "5.00", T0, op="u")
    delete = _cdc("transactions", "d", None) | {
        "value": json.dumps({"before": {"transaction_id": 1}, "after": None, "op": "d", "source": {}})
    }
    assert _events(spark, [tombstone, update, delete]) == []


def _aggregates(spark, messages):
    from instashop.live.spark.realtime_aggregation import window_aggregates
    from instashop.live.spark.realtime_events import events
    from instashop.live.spark.redis_sink import to_aggregate

    rows = window_aggregates(events(_records(spark, messages), ITEMS_TOPIC), "10 minutes").collect()
    return {(a.width, a.start, a.group, a.dim): a for a in map(to_aggregate, rows)}


def test_windows_hold_exact_sums_and_count_each_row_once(spark):
    messages = [
        _transaction(1, "10.10", T0 + 1),
        _transaction(1, "10.10", T0 + 1, op="r"),  # a re-snapshot of the same row
        _transaction(1, "10.10", T0 + 1),  # Debezium redelivers after a Connect crash
        _transaction(1, "10.10", T0 + 1, op="u"),  # status change: not a new order
        _transaction(2, "0.20", T0 + 9, customer=8),
        _transaction(3, "99999999.99", T0 + 59),
        _item("transaction_items:1", "6.00", 2, T0 + 1),
        _item("transaction_items:1", "6.00", 2, T0 + 1),  # the consumer published it twice
        _item("transaction_items:2", "4.10", 1, T0 + 2, product_id=18, category="Home"),
        _cart(1, "s1", "add", T0 + 1),
        _cart(2, "s1", "add", T0 + 12),  # same session, next 10 s window
        _cart(3, "s2", "add", T0 + 13),
        _cart(4, "s2", "remove", T0 + 14),
    ]
    aggs = _aggregates(spark, messages)
    first = aggs[("10s", T0, "transactions", "")]
    assert (first.count, first.amount, first.customers) == (2, Decimal("10.30"), 2)
    minute = aggs[("1m", T0, "transactions", "")]
    assert (minute.count, minute.amount) == (3, Decimal("100000010.29"))
    assert aggs[("10s", T0 + 50, "transactions", "")].amount == Decimal("99999999.99")
    books = aggs[("1m", T0, "category", "Books")]
    assert (books.amount, books.units, books.count) == (Decimal("6.00"), 2, 1)
    product = aggs[("10s", T0, "product", "18")]
    assert (product.amount, product.units, product.name, product.category) == (Decimal("4.10"), 1, "Atlas", "Home")
    assert aggs[("10s", T0, "event", "cart_session")].count == 1
    assert aggs[("10s", T0 + 10, "event", "cart_session")].count == 2
    assert aggs[("1m", T0, "event", "cart_session")].count == 2  # s1 once, although it added twice
    assert aggs[("1m", T0, "event", "cart_add")].count == 3
    assert aggs[("1m", T0, "event", "cart_remove")].count == 1


def test_malformed_records_are_counted_per_topic_and_window(spark):
    messages = [
        {"topic": "instashop.public.transactions", "value": "{", "kafka_time": T0 + 3},
        {"topic": "instashop.public.transactions", "value": "{", "kafka_time": T0 + 4},
        {"topic": ITEMS_TOPIC, "value": "[]", "kafka_time": T0 + 65},
        _transaction(1, "1.00", T0 + 5),
    ]
    aggs = _aggregates(spark, messages)
    assert aggs[("10s", T0, "malformed", "instashop.public.transactions")].count == 2
    assert aggs[("1m", T0 + 60, "malformed", ITEMS_TOPIC)].count == 1
    assert aggs[("1m", T0, "transactions", "")].count == 1


# --- the Real-time Mode relay (plugins/instashop/live/spark/redis_relay.py) ----------------------------------------


def test_rows_through_the_relay_topic_equal_the_query_rows(spark):
    from instashop.live.spark.realtime_aggregation import window_aggregates
    from instashop.live.spark.realtime_events import events
    from instashop.live.spark.redis_relay import kafka_records, parse
    from instashop.live.spark.redis_sink import to_aggregate

    messages = [
        _transaction(1, "10.10", T0 + 1),
        _transaction(2, "99999999.99", T0 + 2),
        _item("transaction_items:1", "6.05", 3, T0 + 1),
        _cart(1, "s1", "add", T0 + 1),
        {"topic": "instashop.public.transactions", "value": "{", "kafka_time": T0 + 3},
    ]
    aggregates = window_aggregates(events(_records(spark, messages), ITEMS_TOPIC), "10 minutes")
    direct = sorted(map(to_aggregate, aggregates.collect()), key=repr)
    records = aggregates.select(*kafka_records(aggregates)).collect()
    relayed = sorted((to_aggregate(parse(r["value"].encode())) for r in records), key=repr)
    assert relayed == direct  # exact amounts (100000010.09), nulls kept, every group
    assert {r["key"] for r in records} == {f"{a.width}|{a.start}|{a.group}|{a.dim}" for a in direct}


def test_relay_writes_the_newest_row_of_each_group():
    from instashop.live.spark.redis_relay import newest_per_group

    rows = [
        {"width": "10s", "start": T0, "grp": "transactions", "dim": "", "count": 1},
        {"width": "1m", "start": T0, "grp": "transactions", "dim": "", "count": 1},
        {"width": "10s", "start": T0, "grp": "transactions", "dim": "", "count": 2},
    ]
    assert newest_per_group(rows) == [rows[2], rows[1]]
    assert topics.live_aggregates("live") == "instashop.live.aggregates"
    assert topics.live_aggregates("live:it:ab12") == "instashop.live.it.ab12.aggregates"
