"""The live-metrics Spark app end to end: OLTP -> Debezium -> Kafka (-> consumer's enriched items) -> Spark
(local mode) -> Redis, exact per window, through a SIGKILL of the driver and past malformed records.

The app runs as its own job instance (key prefix live:it:<id>, its own checkpoint, no UI), so it
disturbs nobody's live:* keys. It reads from the latest offsets, so of everyone's traffic it only sees
what is written after it starts: the orders other people's generators write from then on are at most
30 s old, and the windows these tests assert on lie before that (and inside the app's watermark).
Each test runs against both triggers: Real-time Mode (the default; its rows reach Redis through the
Kafka sink and the relay) and micro-batch (foreachBatch).
"""

import contextlib
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import psycopg2
import pytest
import redis
from confluent_kafka.admin import AdminClient

from instashop import kafka_auth
from instashop.capture import topics
from instashop.kafka_auth import ADMIN, client_config
from instashop.live import metrics as live_metrics
from instashop.ops.process import tail, wait_until
from tests.support.kafka import messages_of, produce
from tests.support.listeners import descendants, ports_of
from tests.support.live_app import SHUFFLE_SERVERS_AT_LEAST, LiveApp
from tests.support.pipeline import Background

# A module-scoped app starts cold in each trigger (up to tests.support.live_app.START_TIMEOUT) inside a test's setup.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

TRANSACTIONS_TOPIC = "instashop.public.transactions"
PAGE_VIEWS_TOPIC = "instashop.public.page_views"
SETTLE_TIMEOUT = 180
# INSTASHOP_LIVE_TRIGGER=micro-batch (or real-time) runs the tests against one trigger only.
TRIGGERS = (
    [os.environ["INSTASHOP_LIVE_TRIGGER"]] if os.environ.get("INSTASHOP_LIVE_TRIGGER") else ["real-time", "micro-batch"]
)


@pytest.fixture(scope="module", params=TRIGGERS)
def live_app(request, settings, cdc_pipeline, tmp_path_factory):
    """The app running with each trigger in turn (the consumer too, for the enriched items); left
    stopped and its keys deleted. Each instance reads from the latest offsets: it never sees the
    orders placed for the one before."""
    app = LiveApp(settings, tmp_path_factory.mktemp("spark") / "checkpoint", request.param)
    try:  # an app that failed to start is stopped too, not left running for the rest of the suite
        app.start()
        app.ready_at = time.time()
        yield app
    finally:
        app.cleanup()


@pytest.fixture(scope="module")
def shop(settings):
    """An OLTP connection; the transactions the tests create are deleted afterwards."""
    shop = Shop(settings.oltp_dsn)
    yield shop
    shop.delete_created()


def quiet_minute(app: LiveApp, age: int) -> int:
    """A minute only these tests write orders into: `age` minutes before the last minute that ended
    at least 30 s before the app started (later orders of others' generators are at most 30 s old)."""
    return live_metrics.window_start(app.ready_at - 30, "1m") - 60 * (age + 1)


# --- the shop side --------------------------------------------------------------------------------


class Shop:
    def __init__(self, dsn: str) -> None:
        self.conn = psycopg2.connect(dsn, application_name="test-realtime-metrics")
        self.created: list[int] = []
        self.sessions: list[str] = []
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT min(customer_id), max(customer_id) FROM customers")
            self.customers = cur.fetchone()
            cur.execute("SELECT product_id, category FROM products ORDER BY product_id LIMIT 3")
            self.products = cur.fetchall()

    def order(self, at: float, amount: Decimal, items: list[tuple[int, int, Decimal]] = ()) -> int:
        """One order (and its items: product, quantity, unit price) committed with created_at = at."""
        when = datetime.fromtimestamp(at, UTC)
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO transactions (customer_id, total_amount, payment_method, status, created_at, updated_at)"
                " VALUES (%s, %s, 'credit_card', 'pending', %s, %s) RETURNING transaction_id",
                (random.randint(*self.customers), amount, when, when),
            )
            transaction_id = cur.fetchone()[0]
            for product_id, quantity, price in items:
                cur.execute(
                    "INSERT INTO transaction_items (transaction_id, product_id, quantity, unit_price, amount,"
                    " created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    (transaction_id, product_id, quantity, price, price * quantity, when),
                )
        self.created.append(transaction_id)
        return transaction_id

    def visit(self, session_id: str, start: float, end: float | None, rng: random.Random) -> None:
        """A visit between start and end (None: still open): page views, searches and cart adds and
        removes at times in between, committed; then its end recorded, as the shop does when the
        visitor leaves (an update of the session)."""
        customer, (product, _) = rng.randint(*self.customers), rng.choice(self.products)
        span = (end or start + 1) - start

        def moment() -> datetime:
            return datetime.fromtimestamp(start + rng.random() * span, UTC)

        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO sessions (session_id, customer_id, device, started_at) VALUES (%s, %s, 'mobile', %s)",
                (session_id, customer, datetime.fromtimestamp(start, UTC)),
            )
            for _ in range(rng.randint(1, 4)):
                cur.execute(
                    "INSERT INTO page_views (session_id, customer_id, page_type, viewed_at)"
                    " VALUES (%s, %s, 'home', %s)",
                    (session_id, customer, moment()),
                )
            for _ in range(rng.randint(0, 2)):
                cur.execute(
                    "INSERT INTO searches (session_id, customer_id, query, results_count, searched_at)"
                    " VALUES (%s, %s, 'socks', 3, %s)",
                    (session_id, customer, moment()),
                )
            for action in rng.choice([(), ("add",), ("add", "add", "remove"), ("remove",)]):
                cur.execute(
                    "INSERT INTO cart_events (session_id, customer_id, product_id, action, quantity, unit_price,"
                    " amount, created_at) VALUES (%s, %s, %s, %s, 1, 2.50, 2.50, %s)",
                    (session_id, customer, product, action, moment()),
                )
        if end is not None:
            self.execute(
                "UPDATE sessions SET ended_at = %s WHERE session_id = %s",
                (datetime.fromtimestamp(end, UTC), session_id),
            )
        self.sessions.append(session_id)

    def execute(self, statement: str, params=()) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(statement, params)

    def query(self, statement: str, params=()) -> list[tuple]:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()

    def delete_created(self) -> None:
        self.execute("DELETE FROM transactions WHERE transaction_id = ANY(%s)", (self.created,))
        self.execute("DELETE FROM sessions WHERE session_id = ANY(%s)", (self.sessions,))  # its rows cascade
        self.conn.close()


# The visit figures of each window, from the OLTP rows of the visits whose ids match %(like)s: one
# row per counted row (field, session, event time). Written from the shop's schema, not the app's code.
VISIT_TRUTH = """
SELECT 'page_views', session_id, viewed_at FROM page_views WHERE session_id LIKE %(like)s
UNION ALL SELECT 'searches', session_id, searched_at FROM searches WHERE session_id LIKE %(like)s
UNION ALL SELECT 'cart_' || action || 's', session_id, created_at FROM cart_events WHERE session_id LIKE %(like)s
UNION ALL SELECT 'sessions_ended', session_id, ended_at FROM sessions
          WHERE session_id LIKE %(like)s AND ended_at IS NOT NULL
"""
VISIT_FIELDS = ("page_views", "searches", "cart_adds", "cart_removes", "sessions_ended", "carts")


def visit_truth(shop: Shop, like: str) -> dict[tuple[str, int], dict[str, int]]:
    """(width, window start) -> the exact visit figures; `carts` = sessions with an add in the window."""
    windows: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(VISIT_FIELDS, 0))
    carts: dict[tuple[str, int], set[str]] = defaultdict(set)
    for field, session_id, at in shop.query(VISIT_TRUTH, {"like": like}):
        for width in live_metrics.WIDTHS:
            window = (width, live_metrics.window_start(at, width))
            windows[window][field] += 1
            if field == "cart_adds":
                carts[window].add(session_id)
    for window, sessions in carts.items():
        windows[window]["carts"] = len(sessions)
    return dict(windows)


class Expected:
    """Exact per-window truth of the orders a test placed, and of its visits (read from the OLTP)."""

    def __init__(self, shop: Shop | None = None, visits: str | None = None) -> None:
        self.shop, self.visits = shop, visits  # visits: LIKE pattern of the test's session ids
        self.windows: dict[tuple[str, int], dict] = defaultdict(
            lambda: {"transactions": 0, "revenue": Decimal("0.00"), "categories": defaultdict(lambda: [Decimal(0), 0])}
        )

    def add(self, at: float, amount: Decimal, items=(), categories: dict[int, str] | None = None) -> None:
        for width in live_metrics.WIDTHS:
            window = self.windows[(width, live_metrics.window_start(at, width))]
            window["transactions"] += 1
            window["revenue"] += amount
            for product_id, quantity, price in items:
                category = window["categories"][categories[product_id]]
                category[0] += price * quantity
                category[1] += quantity

    def differences(self, app: LiveApp) -> list[str]:
        wrong = []
        for (width, start), want in sorted(self.windows.items()):
            got = app.window(width, start)
            have, want_totals = (got["transactions"], got.get("revenue")), (want["transactions"], want["revenue"])
            if have != want_totals:
                wrong.append(f"{width}@{start}: {have} != {want_totals}")
            categories = {c: (v["revenue"], v["units"]) for c, v in got["categories"].items()}
            if categories != {c: (r, u) for c, (r, u) in want["categories"].items()}:
                wrong.append(f"{width}@{start} categories: {categories} != {dict(want['categories'])}")
        if self.visits:
            for (width, start), want in sorted(visit_truth(self.shop, self.visits).items()):
                got = app.window(width, start)
                have = {field: got.get(field, 0) for field in VISIT_FIELDS}
                if have != want:
                    wrong.append(f"{width}@{start} visits: {have} != {want}")
        return wrong

    def wait_until_equal(self, app: LiveApp, timeout: float = SETTLE_TIMEOUT) -> None:
        if not wait_until(lambda: not self.differences(app), timeout, 1):
            raise AssertionError(
                f"Redis != exact sums after {timeout:.0f}s: {self.differences(app)}; {app.heartbeat()}"
            )


def _random_orders(shop: Shop, minute: int, count: int, seed: int) -> list[tuple[float, Decimal, list]]:
    rng = random.Random(seed)
    orders = []
    for _ in range(count):
        at = minute + rng.randint(0, 59_999) / 1000
        items = [(p, rng.randint(1, 3), Decimal(rng.randint(1, 99_999)) / 100) for p, _ in rng.sample(shop.products, 2)]
        amount = sum((price * quantity for _, quantity, price in items), Decimal("0.00"))
        orders.append((at, amount, items))
    return orders


# --- tests --------------------------------------------------------------------------------------------


def test_window_revenue_and_count_equal_the_exact_sums(settings, live_app, shop):
    minute = quiet_minute(live_app, age=0)
    categories = dict(shop.products)
    expected = Expected()
    orders = [*_random_orders(shop, minute, 40, seed=1), (minute + 59.999, Decimal("99999999.99"), [])]
    for at, amount, items in orders:
        shop.order(at, amount, items)
        expected.add(at, amount, items, categories)
    # an order's later changes don't make it a second order, nor do they take it back
    first, last = shop.created[-len(orders)], shop.created[-1]
    shop.execute("UPDATE transactions SET status = 'paid' WHERE transaction_id = %s", (first,))
    shop.execute("DELETE FROM transactions WHERE transaction_id = %s", (last,))
    expected.wait_until_equal(live_app)

    window = live_app.window("1m", minute)
    assert window["avg_ticket"] == live_metrics.average_ticket(window["revenue"], window["transactions"])
    assert window["buyers"] > 0  # approximate (HyperLogLog++)
    ranking = live_metrics.top_products(live_app.redis, minute + 60, prefix=live_app.prefix)
    assert {p["product_id"] for p in ranking} >= {p for p, _ in shop.products}
    assert all(isinstance(p["revenue"], Decimal) for p in ranking)


def test_redelivered_changes_and_items_are_not_counted_twice(settings, live_app, shop):
    minute = quiet_minute(live_app, age=1)
    categories = dict(shop.products)
    expected = Expected()
    since = time.time() - 1
    for at, amount, items in _random_orders(shop, minute, 10, seed=2):
        shop.order(at, amount, items)
        expected.add(at, amount, items, categories)
    expected.wait_until_equal(live_app)
    # Debezium after a Connect crash, the consumer after its own: the same records once more
    again = [
        (topic, key, value, None)
        for topic in (TRANSACTIONS_TOPIC, topics.ENRICHED_TRANSACTION_ITEMS)
        for key, value in messages_of(settings, topic, since, shop.created[-1])
    ]
    assert len(again) == 3, "the order and its two items should be on their topics"
    produce(settings, again)
    barrier = minute + 30.5
    shop.order(barrier, Decimal("1.00"))  # read after the copies: once it shows, they were processed
    expected.add(barrier, Decimal("1.00"))
    expected.wait_until_equal(live_app)


def test_malformed_records_are_counted_and_skipped(settings, live_app, shop):
    kafka_minute = quiet_minute(live_app, age=3)
    key = json.dumps({"transaction_id": 0, "test": "live-malformed"}).encode()
    bad_row = {"transaction_id": 1, "customer_id": 1, "total_amount": "12.345", "created_at": "2026-01-01T00:00:00Z"}
    poison = [
        (TRANSACTIONS_TOPIC, key, b'{"op": "c", "after": {', kafka_minute * 1000 + 1_000),
        (TRANSACTIONS_TOPIC, key, json.dumps({"op": "c", "after": bad_row}).encode(), kafka_minute * 1000 + 2_000),
        (
            PAGE_VIEWS_TOPIC,
            key,
            json.dumps({"op": "c", "after": {"page_view_id": 1}}).encode(),
            kafka_minute * 1000 + 15_000,
        ),
        (topics.ENRICHED_TRANSACTION_ITEMS, key, b"[]", kafka_minute * 1000 + 15_000),
    ]
    produce(settings, poison)
    minute = quiet_minute(live_app, age=2)
    expected = Expected()
    shop.order(minute + 1, Decimal("12.34"))  # after the poison: the query goes on
    expected.add(minute + 1, Decimal("12.34"))
    expected.wait_until_equal(live_app)

    by_topic = live_app.window("1m", kafka_minute)["malformed_by_topic"]
    assert by_topic == {TRANSACTIONS_TOPIC: 2, PAGE_VIEWS_TOPIC: 1, topics.ENRICHED_TRANSACTION_ITEMS: 1}
    assert live_app.window("10s", kafka_minute)["malformed_by_topic"] == {TRANSACTIONS_TOPIC: 2}
    assert live_app.heartbeat()["status"] == "running"


def test_visit_figures_equal_the_oltp_rows(settings, live_app, shop):
    """Page views, searches, cart adds and removes, carts and ended visits (the inputs of the Live
    conversion and abandonment rates), exact per window against the shop's rows."""
    minute = quiet_minute(live_app, age=5)
    like = f"sess_lt{uuid.uuid4().hex[:8]}"
    expected = Expected(shop, visits=like + "%")
    rng = random.Random(5)
    for n in range(12):
        start = minute + rng.randint(0, 40_000) / 1000
        shop.visit(f"{like}{n:04d}", start, start + rng.randint(1, 19_999) / 1000, rng)
    shop.visit(f"{like}open", minute + 1, None, rng)  # not ended: its rows count, its end does not
    # A later change of a counted row is not a second row.
    shop.execute("UPDATE page_views SET page_type = 'product' WHERE session_id = %s", (f"{like}0000",))
    truth = visit_truth(shop, like + "%")[("1m", minute)]
    assert all(truth[field] > 0 for field in VISIT_FIELDS), truth
    assert truth["sessions_ended"] == 12
    expected.wait_until_equal(live_app)


def test_driver_killed_mid_stream_loses_and_duplicates_nothing(settings, live_app, shop):
    minute = quiet_minute(live_app, age=4)
    categories = dict(shop.products)
    like = f"sess_lt{uuid.uuid4().hex[:8]}"
    expected = Expected(shop, visits=like + "%")
    # Placed until stopped once the app is back (at most 800: the app must catch up within the settle time).
    orders = _random_orders(shop, minute, 800, seed=4)
    rng, stop = random.Random(4), threading.Event()

    def place() -> None:
        for n, (at, amount, items) in enumerate(orders):
            if stop.is_set():
                return
            shop.order(at, amount, items)
            expected.add(at, amount, items, categories)
            if n % 4 == 0:
                shop.visit(f"{like}{n:06d}", at, min(at + 5, minute + 59.999), rng)
            time.sleep(0.3)

    query_id = live_app.heartbeat()["query_id"]
    writer = Background(place)
    writer.start()
    assert wait_until(lambda: live_app.window("1m", minute)["transactions"] > 0, 60, 0.2), "nothing counted yet"
    assert wait_until(lambda: any(live_app.checkpoint.glob("state/*/*/*.zip")), 60, 0.5), "no state snapshot yet"
    assert writer.is_alive(), "the orders were all placed before the kill: it would not hit mid-stream"
    killed_files = live_app.scratch_files()
    live_app.job.kill()  # SIGKILL to the driver's process group: Python driver and JVM at once
    assert live_app.job.pid() is None
    counted = live_app.window("1m", minute)["transactions"]

    def placed() -> int:
        return expected.windows[("1m", minute)]["transactions"]

    # The shop goes on while the app is down: Redis falls behind and must catch up from the checkpoint.
    assert wait_until(lambda: placed() > counted + 10, 30, 0.2), f"no order placed after the kill: {placed()}"
    assert writer.is_alive()
    live_app.start()  # same checkpoint: resumes after the last committed batch, replays the one in flight
    # The killed driver's temporary files (state store copies, native libraries) are gone with it.
    assert killed_files and live_app.scratch_files() and not killed_files & live_app.scratch_files()
    stop.set()
    writer.finish(timeout=60)
    expected.wait_until_equal(live_app)
    # And nothing arrives twice later: an order and a visit placed now are read after any replay.
    barrier = minute + 58.5
    item = [(shop.products[0][0], 1, Decimal("1.00"))]
    shop.order(barrier, Decimal("1.00"), item)
    expected.add(barrier, Decimal("1.00"), item, categories)
    shop.visit(f"{like}barrier", barrier, barrier + 1, rng)
    expected.wait_until_equal(live_app)
    beat = live_app.heartbeat()
    assert beat["query_id"] == query_id and beat["status"] == "running"


def test_stray_connections_to_every_port_of_the_driver_leave_the_query_running(settings, live_app, shop):
    """A `GET ` sent to every TCP port the driver (Python and JVM) listens on, the Real-time Mode
    streaming-shuffle servers included (their protocol read `GET ` as a frame length and failed the
    task, and so the query): the app keeps running and its windows stay exact."""
    pid = live_app.job.pid()
    tree = descendants(pid)
    # Each Real-time batch starts its tasks, and their shuffle servers, anew (a checkpoint every 10 s
    # here): a round that a batch's end cut short is tried again.
    wanted = SHUFFLE_SERVERS_AT_LEAST if live_app.trigger == "real-time" else 1
    reached = []
    for _ in range(5):
        assert wait_until(lambda: len(ports_of(tree)) >= wanted, 120, 0.2), f"the driver listens on {ports_of(tree)}"
        reached.append(_send_stray_requests(ports_of(tree)))
        if reached[-1] >= wanted:
            break
    assert reached[-1] >= wanted, f"ports that took the request, per round: {reached}"
    if live_app.trigger == "real-time":
        # A Real-time task notices the broken connection when its batch ends: let two batches end.
        # (A micro-batch runs only when data comes: the orders below.)
        batch = int(live_app.heartbeat().get("batch_id") or -1)
        ended = lambda: int((live_app.heartbeat() or {}).get("batch_id") or -1) >= batch + 2  # noqa: E731
        assert wait_until(ended, SETTLE_TIMEOUT, 1), f"no batch ended since the stray requests: {live_app.heartbeat()}"

    minute = quiet_minute(live_app, age=5)
    categories = dict(shop.products)
    expected = Expected()
    for at, amount, items in _random_orders(shop, minute, 10, seed=5):
        shop.order(at, amount, items)
        expected.add(at, amount, items, categories)
    expected.wait_until_equal(live_app)
    assert live_app.job.pid() == pid, f"the app exited:\n{tail(live_app.job.process.log_file)}"
    assert live_app.heartbeat()["status"] == "running"


def _send_stray_requests(ports) -> int:
    """An HTTP request to each port; returns how many took it."""
    reached = 0
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as stray:
                stray.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                reached += 1
                stray.settimeout(1)
                with contextlib.suppress(OSError):  # no answer (timeout) or reset: either is fine
                    stray.recv(1024)
        except ConnectionRefusedError:  # a batch ended meanwhile and its tasks' servers with it
            continue
    return reached


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_app_started_before_any_change_was_captured_counts_what_comes(settings, tmp_path, trigger):
    """Issue 16, item 7: on a fresh machine the app started before Debezium had created the CDC
    topics and crash-looped (unknown topics; in Real-time Mode a query sized for the partitions
    present, i.e. none). The topics are now created up front, as `make up` does (`instashop topics
    ensure`, as admin): the app starts on empty topics and counts what comes."""
    run = uuid.uuid4().hex[:8]
    topic_prefix, items_topic = f"it{run}", f"it{run}.enriched.transaction_items"
    app = LiveApp(
        settings, tmp_path / "checkpoint", trigger, "--topic-prefix", topic_prefix, "--items-topic", items_topic
    )
    wanted = [f"{topic_prefix}.public.{table}" for table in ("transactions", "page_views", "searches", "cart_events")]
    wanted += [f"{topic_prefix}.public.sessions", items_topic]
    kafka = client_config(settings, ADMIN)
    admin = AdminClient(kafka)
    scratch = kafka_auth.scratch_grants(kafka_auth.SPARK, topic_prefix)  # spark reads instashop.* only
    kafka_auth.grant(admin, scratch)
    try:
        assert sorted(topics.ensure(kafka, dict.fromkeys(wanted, topics.STREAM))) == sorted(wanted)
        app.start()
        at = time.time() - 90  # any window: nobody else writes these topics
        created_at = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        after = {"transaction_id": 1, "customer_id": 1, "total_amount": "12.34", "created_at": created_at}
        key = json.dumps({"transaction_id": 1}).encode()
        produce(
            settings,
            [(f"{topic_prefix}.public.transactions", key, json.dumps({"op": "c", "after": after}).encode(), None)],
        )
        expected = Expected()
        expected.add(at, Decimal("12.34"))
        expected.wait_until_equal(app)
    finally:
        app.cleanup()
        admin.delete_topics([t for t in wanted if t in admin.list_topics(timeout=10).topics])
        kafka_auth.revoke(admin, scratch)


def test_too_few_task_slots_for_real_time_mode_stop_the_start_with_what_to_change(settings, tmp_path):
    """local[4] offers 4 slots, a Real-time batch over the CDC topics holds 20: the start fails with
    the numbers and the fixes, before the driver JVM starts (no heartbeat written), instead of the
    query failing with CONCURRENT_SCHEDULER_INSUFFICIENT_SLOT and restarting in vain."""
    prefix = f"{live_metrics.PREFIX}:it:{uuid.uuid4().hex[:8]}"
    python = str(settings.main_venv / "bin" / "python")
    argv = [python, "-m", "instashop.live.spark.app", "--master", "local[4]", "--trigger", "real-time"]
    argv += ["--key-prefix", prefix, "--checkpoint", str(tmp_path / "checkpoint"), "--no-ui"]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        output = run.stdout + run.stderr
        assert run.returncode == 2, output
        assert "Real-time Mode needs" in output and "offers 4" in output, output
        assert "--trigger micro-batch" in output, output
        assert live_metrics.read_heartbeat(redis.Redis.from_url(settings.redis_url), prefix) is None
    finally:
        AdminClient(client_config(settings, ADMIN)).delete_topics([topics.live_aggregates(prefix)])
