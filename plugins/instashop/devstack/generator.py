"""Workload generator: realistic shop sessions written into the OLTP database.

What a visitor does, and what later happens to a payment, is decided by pure functions of a
`random.Random` and the catalog (`plan_session`, `Lifecycle`), so the decisions are unit-testable and a
seed reproduces them. `ShopWriter` turns the decisions into SQL; `run` paces the loop.

Each session is committed as one database transaction, the way the shop app would record a visit, so
Debezium downstream sees realistic multi-row transactions. Later changes (payment settled, refund,
price change, clean-up deletes) each get their own small transaction.

Reproducibility: the same seed on the same starting state writes the same customers, products,
outcomes, quantities, prices, statuses and deletes. Timestamps, serial ids and session ids differ:
a session id is `sess_<run id><counter>` with a random per-run id, because it is a primary key and a
second run with the same seed must not collide with the first.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import secrets
import signal
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extras
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

_log = logging.getLogger(__name__)

CENT = Decimal("0.01")

CONVERSION, CART_ABANDONMENT, BOUNCE = "conversion", "cart_abandonment", "bounce"
OUTCOMES = (CONVERSION, CART_ABANDONMENT, BOUNCE)

# category -> (lowest price, highest price, product nouns); nouns double as search terms.
_CATEGORY_SPECS = {
    "Electronics": (19, 1499, "Wireless Earbuds, Smartwatch, Laptop, 4K Monitor, Tablet, Bluetooth Speaker"),
    "Clothing": (9, 199, "T-Shirt, Denim Jacket, Running Shoes, Hoodie, Chinos, Summer Dress, Wool Sweater"),
    "Books": (4, 59, "Cookbook, Mystery Novel, Sci-Fi Paperback, Travel Guide, Biography, Python Handbook"),
    "Home": (9, 399, "Coffee Maker, Desk Lamp, Throw Blanket, Cookware Set, Air Purifier, Bath Towels"),
    "Sports": (9, 299, "Yoga Mat, Dumbbell Set, Tennis Racket, Cycling Helmet, Water Bottle, Football"),
    "Beauty": (4, 89, "Face Serum, Shampoo, Lipstick, Sunscreen, Perfume, Hand Cream"),
    "Toys": (4, 149, "Building Blocks, Puzzle, Plush Bear, Board Game, RC Car, Doll House"),
    "Grocery": (0, 29, "Olive Oil, Coffee Beans, Dark Chocolate, Green Tea, Pasta, Honey"),
}
CATEGORIES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    name: (low, high, tuple(nouns.split(", "))) for name, (low, high, nouns) in _CATEGORY_SPECS.items()
}
_BRANDS = ("Acme", "Nordika", "Solara", "Vertex", "Lumo", "Kairo", "Brisa", "Orbit", "Andes", "Pampa")
_ADJECTIVES = ("Classic", "Pro", "Eco", "Deluxe", "Compact", "Premium", "Essential", "Ultra")
_PRICE_ENDINGS = (Decimal("0.99"), Decimal("0.99"), Decimal("0.49"), Decimal("0.95"), Decimal("0.00"))
_SEARCH_MODIFIERS = ("", "", "best ", "cheap ", "gift ", "sale ", "new ")

# Spanish-speaking markets first, as the shop's; a few others.
_FIRST_NAMES = ("Ana", "Lucía", "Sofía", "Camila", "María", "Emma", "Mateo", "Diego", "Juan", "Tomás", "Liam")
_LAST_NAMES = ("García", "Martínez", "López", "Pérez", "Gómez", "Silva", "Smith", "Brown", "Müller", "Rossi")
_COUNTRIES = ("AR", "ES", "MX", "CO", "CL", "US", "BR", "GB", "DE", "FR")
_COUNTRY_WEIGHTS = (18, 16, 14, 10, 8, 12, 8, 5, 5, 4)

_DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_WEIGHTS = (55, 35, 10)
_PAYMENT_METHODS = ("credit_card", "debit_card", "paypal", "apple_pay", "bank_transfer")
_PAYMENT_WEIGHTS = (50, 20, 15, 10, 5)
_LANDING_PAGES = ("home", "category", "product")
_LANDING_WEIGHTS = (50, 20, 30)
_QUANTITIES = (1, 2, 3, 4, 5)
_QUANTITY_WEIGHTS = (75, 17, 5, 2, 1)


# --- catalog ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    product_id: int
    name: str
    category: str
    price: Decimal


@dataclass
class Catalog:
    """The customers and products a session can pick from; prices follow the generator's changes."""

    customer_ids: list[int]
    products: list[Product]
    _index: dict[int, int] = field(init=False, repr=False)
    _cum_weights: list[float] = field(init=False, repr=False)
    by_category: dict[str, list[Product]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.customer_ids or not self.products:
            raise ValueError("the catalog needs at least one customer and one product")
        self._index = {p.product_id: i for i, p in enumerate(self.products)}
        # A few best sellers and a long tail: Zipf-like popularity by catalog position.
        self._cum_weights = list(itertools.accumulate(1 / (i + 1) ** 0.8 for i in range(len(self.products))))
        self._rebuild_categories()

    def _rebuild_categories(self) -> None:
        self.by_category = {}
        for product in self.products:
            self.by_category.setdefault(product.category, []).append(product)

    @property
    def categories(self) -> list[str]:
        return sorted(self.by_category)

    def pick_product(self, rng: random.Random, category: str | None = None) -> Product:
        """A product of `category` most of the time when one is in focus, else a popular one."""
        if category in self.by_category and rng.random() < 0.7:
            return rng.choice(self.by_category[category])
        return rng.choices(self.products, cum_weights=self._cum_weights)[0]

    def set_price(self, product_id: int, price: Decimal) -> None:
        i = self._index[product_id]
        self.products[i] = Product(product_id, self.products[i].name, self.products[i].category, price)
        self._rebuild_categories()


# --- seed rows (pure) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerRow:
    name: str
    email: str
    country: str


@dataclass(frozen=True)
class ProductRow:
    name: str
    category: str
    price: Decimal


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def customer_row(rng: random.Random, ordinal: int) -> CustomerRow:
    """A customer; the ordinal keeps emails unique when the table is topped up again later."""
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    country = rng.choices(_COUNTRIES, weights=_COUNTRY_WEIGHTS)[0]
    return CustomerRow(f"{first} {last}", f"{_ascii(first)}.{_ascii(last)}.{ordinal}@example.com", country)


def product_row(rng: random.Random) -> ProductRow:
    category = rng.choice(list(CATEGORIES))
    low, high, nouns = CATEGORIES[category]
    name = f"{rng.choice(_BRANDS)} {rng.choice(_ADJECTIVES)} {rng.choice(nouns)}"
    price = Decimal(rng.randint(low, high)) + rng.choice(_PRICE_ENDINGS)
    return ProductRow(name, category, max(price, Decimal("0.49")))


def reprice(rng: random.Random, price: Decimal) -> Decimal:
    """A new price within ±15 %, ending in .99 like shop prices do; never equal to the old one."""
    factor = Decimal(rng.randint(85, 115)) / 100
    new = max((price * factor).quantize(Decimal(1)) - CENT, Decimal("0.99"))
    return new if new != price else new + 1


# --- session plans (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PageView:
    at_ms: int
    page_type: str
    product_id: int | None = None


@dataclass(frozen=True)
class Search:
    at_ms: int
    query: str
    results_count: int


@dataclass(frozen=True)
class CartEvent:
    at_ms: int
    product_id: int
    action: str
    quantity: int
    unit_price: Decimal
    amount: Decimal


Event = PageView | Search | CartEvent


@dataclass(frozen=True)
class LineItem:
    product_id: int
    quantity: int
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Purchase:
    at_ms: int
    payment_method: str
    items: tuple[LineItem, ...]
    total_amount: Decimal


@dataclass(frozen=True)
class SessionPlan:
    """Everything one visit writes; times are milliseconds after the session started."""

    customer_id: int
    device: str
    outcome: str
    events: tuple[Event, ...]
    purchase: Purchase | None
    duration_ms: int

    def row_counts(self) -> Counter[str]:
        counts = Counter({"sessions": 1})
        for event in self.events:
            counts[_TABLE_OF[type(event)]] += 1
        if self.purchase:
            counts["transactions"] += 1
            counts["transaction_items"] += len(self.purchase.items)
        return counts


_TABLE_OF: dict[type, str] = {PageView: "page_views", Search: "searches", CartEvent: "cart_events"}


@dataclass(frozen=True)
class OutcomeMix:
    """How sessions end. Defaults: about 45 % bounce and 64 % of carts abandoned, as shops report."""

    conversion: float = 0.20
    cart_abandonment: float = 0.35
    bounce: float = 0.45

    def __post_init__(self) -> None:
        weights = (self.conversion, self.cart_abandonment, self.bounce)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("outcome weights must be >= 0 and not all 0")


def choose_outcome(rng: random.Random, mix: OutcomeMix) -> str:
    return rng.choices(OUTCOMES, weights=(mix.conversion, mix.cart_abandonment, mix.bounce))[0]


def line_amount(quantity: int, unit_price: Decimal) -> Decimal:
    return (unit_price * quantity).quantize(CENT)


class _Clock:
    """Strictly increasing offsets: every step takes at least a second."""

    def __init__(self) -> None:
        self.now_ms = 0

    def tick(self, rng: random.Random, low_s: float, high_s: float) -> int:
        self.now_ms += rng.randint(int(low_s * 1000), int(high_s * 1000))
        return self.now_ms


def _landing(rng: random.Random, catalog: Catalog) -> PageView:
    page = rng.choices(_LANDING_PAGES, weights=_LANDING_WEIGHTS)[0]
    return PageView(0, page, catalog.pick_product(rng).product_id if page == "product" else None)


def _bounce_events(rng: random.Random, catalog: Catalog, clock: _Clock) -> list[Event]:
    events: list[Event] = [_landing(rng, catalog)]
    if rng.random() < 0.25:  # a second look, then gone
        events.append(PageView(clock.tick(rng, 3, 20), "product", catalog.pick_product(rng).product_id))
    return events


def _search_query(rng: random.Random, category: str) -> str:
    # A category seeded by someone else has no nouns: its name is the search term then.
    terms = CATEGORIES[category][2] if category in CATEGORIES else (category,)
    return f"{rng.choice(_SEARCH_MODIFIERS)}{rng.choice(terms)}".lower()


def _search(rng: random.Random, clock: _Clock, category: str) -> Search:
    results = 0 if rng.random() < 0.08 else rng.randint(1, 250)  # some searches find nothing
    return Search(clock.tick(rng, 2, 15), _search_query(rng, category), results)


def _cart_event(at_ms: int, product: Product, action: str, quantity: int) -> CartEvent:
    return CartEvent(at_ms, product.product_id, action, quantity, product.price, line_amount(quantity, product.price))


class _Cart:
    """Net quantity per product, in the order first added; unit prices are fixed within a session."""

    def __init__(self) -> None:
        self.lines: dict[int, tuple[Product, int]] = {}

    def add(self, product: Product, quantity: int) -> None:
        held = self.lines.get(product.product_id, (product, 0))[1]
        self.lines[product.product_id] = (product, held + quantity)

    def remove(self, product_id: int) -> tuple[Product, int]:
        return self.lines.pop(product_id)

    def items(self) -> tuple[LineItem, ...]:
        return tuple(LineItem(p.product_id, q, p.price, line_amount(q, p.price)) for p, q in self.lines.values())


def _browse(rng: random.Random, catalog: Catalog, clock: _Clock) -> tuple[list[Event], _Cart]:
    """Landing, then searches, category and product pages with cart adds (at least one) and removes."""
    events: list[Event] = [_landing(rng, catalog)]
    cart, focus = _Cart(), None
    for _ in range(rng.randint(2, 9)):
        roll = rng.random()
        if roll < 0.15:
            focus = rng.choice(catalog.categories)
            events.append(_search(rng, clock, focus))
        elif roll < 0.35:
            focus = rng.choice(catalog.categories)
            events.append(PageView(clock.tick(rng, 3, 30), "category"))
        else:
            product = catalog.pick_product(rng, focus)
            events.append(PageView(clock.tick(rng, 5, 90), "product", product.product_id))
            if rng.random() < 0.3:
                events.append(_add(rng, cart, product, clock))
        if len(cart.lines) >= 2 and rng.random() < 0.08:  # changed their mind, from the cart page
            events.append(PageView(clock.tick(rng, 2, 20), "cart"))
            product, quantity = cart.remove(rng.choice(list(cart.lines)))
            events.append(_cart_event(clock.tick(rng, 1, 10), product, "remove", quantity))
    if not cart.lines:  # both outcomes that reach here are defined by a cart add
        product = catalog.pick_product(rng, focus)
        events.append(PageView(clock.tick(rng, 5, 90), "product", product.product_id))
        events.append(_add(rng, cart, product, clock))
    return events, cart


def _add(rng: random.Random, cart: _Cart, product: Product, clock: _Clock) -> CartEvent:
    quantity = rng.choices(_QUANTITIES, weights=_QUANTITY_WEIGHTS)[0]
    cart.add(product, quantity)
    return _cart_event(clock.tick(rng, 1, 20), product, "add", quantity)


def _abandon(rng: random.Random, clock: _Clock) -> list[Event]:
    events: list[Event] = []
    if rng.random() < 0.6:
        events.append(PageView(clock.tick(rng, 2, 30), "cart"))
        if rng.random() < 0.4:  # got as far as checkout, then left
            events.append(PageView(clock.tick(rng, 5, 60), "checkout"))
    return events


def _checkout(rng: random.Random, clock: _Clock, cart: _Cart) -> tuple[list[Event], Purchase]:
    events: list[Event] = [PageView(clock.tick(rng, 2, 30), "cart"), PageView(clock.tick(rng, 5, 60), "checkout")]
    items = cart.items()
    total = sum((item.amount for item in items), Decimal("0.00"))
    method = rng.choices(_PAYMENT_METHODS, weights=_PAYMENT_WEIGHTS)[0]
    return events, Purchase(clock.tick(rng, 10, 120), method, items, total)


def plan_session(rng: random.Random, catalog: Catalog, mix: OutcomeMix = OutcomeMix()) -> SessionPlan:
    """What one visit of a random existing customer does, ending in one of the three outcomes."""
    outcome = choose_outcome(rng, mix)
    customer_id = rng.choice(catalog.customer_ids)
    device = rng.choices(_DEVICES, weights=_DEVICE_WEIGHTS)[0]
    clock, purchase = _Clock(), None
    if outcome == BOUNCE:
        events = _bounce_events(rng, catalog, clock)
    else:
        events, cart = _browse(rng, catalog, clock)
        if outcome == CONVERSION:
            tail, purchase = _checkout(rng, clock, cart)
        else:
            tail = _abandon(rng, clock)
        events += tail
    duration_ms = clock.tick(rng, 2, 30)  # time on the last page before leaving
    return SessionPlan(customer_id, device, outcome, tuple(events), purchase, duration_ms)


# --- later changes (pure decisions, scheduled in session ticks) -----------------------------------


@dataclass(frozen=True)
class Settle:
    transaction_id: int
    status: str  # paid | failed


@dataclass(frozen=True)
class Refund:
    transaction_id: int


@dataclass(frozen=True)
class DeleteTransaction:
    transaction_id: int


@dataclass(frozen=True)
class DeleteSession:
    session_id: str


@dataclass(frozen=True)
class ChangePrice:
    product_id: int
    price: Decimal


Action = Settle | Refund | DeleteTransaction | DeleteSession | ChangePrice


@dataclass(frozen=True)
class LifecycleRates:
    """Probabilities and delays (in sessions) of what happens after a session; small but non-zero."""

    payment_failure: float = 0.08  # of settled payments
    refund: float = 0.05  # of paid transactions
    delete_failed: float = 0.25  # of failed transactions (purged, items cascade)
    delete_bounce: float = 0.03  # of bounced sessions (bot traffic clean-up, views cascade)
    price_change: float = 0.01  # per session
    settle_after: tuple[int, int] = (1, 8)
    refund_after: tuple[int, int] = (5, 40)
    delete_after: tuple[int, int] = (1, 10)


class Lifecycle:
    """Schedules, with its own rng, what happens later to the rows sessions created.

    Delays count sessions rather than seconds, so the same seed decides the same changes at any rate.
    """

    def __init__(self, rng: random.Random, rates: LifecycleRates = LifecycleRates()) -> None:
        self._rng, self._rates = rng, rates
        self._queue: list[tuple[int, int, Action]] = []
        self._seq = itertools.count()  # ties in the heap break by scheduling order, never by Action

    def __len__(self) -> int:
        return len(self._queue)

    def _schedule(self, tick: int, delay: tuple[int, int], action: Action) -> None:
        heapq.heappush(self._queue, (tick + self._rng.randint(*delay), next(self._seq), action))

    def on_session(self, tick: int, outcome: str, session_id: str, transaction_id: int | None) -> None:
        if transaction_id is not None:
            status = "failed" if self._rng.random() < self._rates.payment_failure else "paid"
            self._schedule(tick, self._rates.settle_after, Settle(transaction_id, status))
        elif outcome == BOUNCE and self._rng.random() < self._rates.delete_bounce:
            self._schedule(tick, self._rates.delete_after, DeleteSession(session_id))

    def on_applied(self, tick: int, action: Action) -> None:
        """Follow-ups of a change that landed: refunds of paid, purges of failed transactions."""
        if not isinstance(action, Settle):
            return
        if action.status == "paid" and self._rng.random() < self._rates.refund:
            self._schedule(tick, self._rates.refund_after, Refund(action.transaction_id))
        elif action.status == "failed" and self._rng.random() < self._rates.delete_failed:
            self._schedule(tick, self._rates.delete_after, DeleteTransaction(action.transaction_id))

    def due(self, tick: int, catalog: Catalog) -> list[Action]:
        actions: list[Action] = []
        while self._queue and self._queue[0][0] <= tick:
            actions.append(heapq.heappop(self._queue)[2])
        if self._rng.random() < self._rates.price_change:
            product = catalog.pick_product(self._rng)
            actions.append(ChangePrice(product.product_id, reprice(self._rng, product.price)))
        return actions


# --- database --------------------------------------------------------------------------------------


class GeneratorError(Exception):
    """The generator cannot go on (database unreachable, a statement failed)."""


_SEED_LOCK = "SELECT pg_advisory_xact_lock(hashtext('instashop.generator.seed'))"


def seed_catalog(conn, rng: random.Random, customers: int, products: int) -> dict[str, int]:
    """Top customers and products up to the requested counts; returns the rows added per table."""
    with conn, conn.cursor() as cur:
        cur.execute(_SEED_LOCK)  # two generators starting together must not both top up
        cur.execute("SELECT count(*) FROM customers")
        have = cur.fetchone()[0]
        rows = [customer_row(rng, have + i + 1) for i in range(max(customers - have, 0))]
        inserted = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO customers (name, email, country) VALUES %s ON CONFLICT (email) DO NOTHING RETURNING 1",
            [(r.name, r.email, r.country) for r in rows],
            page_size=1000,
            fetch=True,
        )
        added = {"customers": len(inserted)}
        cur.execute("SELECT count(*) FROM products")
        missing = max(products - cur.fetchone()[0], 0)
        new = [product_row(rng) for _ in range(missing)]
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO products (name, category, price) VALUES %s",
            [(p.name, p.category, p.price) for p in new],
            page_size=1000,
        )
        added["products"] = missing
    return added


# The dearest product a session may buy. Money is numeric(12,2) (at most 9,999,999,999.99): a
# product someone priced near that limit would overflow a cart line or an order total, and the
# generator would die on it. Such products are left unsold.
MAX_SELLABLE_PRICE = Decimal("1000000.00")


def load_catalog(conn) -> Catalog:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT customer_id FROM customers ORDER BY customer_id")
        customer_ids = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT product_id, name, category, price FROM products ORDER BY product_id")
        products = [Product(*row) for row in cur.fetchall()]
    sellable = [p for p in products if p.price <= MAX_SELLABLE_PRICE]
    if skipped := len(products) - len(sellable):
        _log.warning(
            "%d product(s) priced above %s are left unsold (their totals would overflow)", skipped, MAX_SELLABLE_PRICE
        )
    return Catalog(customer_ids, sellable)


_INSERT_SESSION = "INSERT INTO sessions (session_id, customer_id, device, started_at) VALUES (%s, %s, %s, %s)"
_INSERT_PAGE_VIEW = (
    "INSERT INTO page_views (session_id, customer_id, page_type, product_id, viewed_at) VALUES (%s, %s, %s, %s, %s)"
)
_INSERT_SEARCH = (
    "INSERT INTO searches (session_id, customer_id, query, results_count, searched_at) VALUES (%s, %s, %s, %s, %s)"
)
_INSERT_CART_EVENT = (
    "INSERT INTO cart_events (session_id, customer_id, product_id, action, quantity, unit_price, amount, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_TRANSACTION = (
    "INSERT INTO transactions (customer_id, session_id, total_amount, payment_method, status, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, 'pending', %s, %s) RETURNING transaction_id, txid_current()"
)
_INSERT_ITEM = (
    "INSERT INTO transaction_items (transaction_id, product_id, quantity, unit_price, amount, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
_END_SESSION = "UPDATE sessions SET ended_at = %s WHERE session_id = %s"
_TXID = "SELECT txid_current()"
# A lost connection is not a reason to stop: the shop app would reconnect and carry on.
_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class ShopWriter:
    """Writes plans and actions as the shop app would: one transaction per session or change.

    A lost connection (a database restart) is ridden out: reconnect, then ask the server whether
    the transaction in flight committed (`txid_status` of its transaction id) and write it again
    only if it did not. So each session and change is written exactly once, and the caller's
    counts stay true. Gives up with GeneratorError after `reconnect_for` seconds without a database.
    """

    def __init__(self, connect: Callable[[], Any], reconnect_for: float = 0.0) -> None:
        self._connect = connect
        self._reconnect_for = reconnect_for
        self.conn = connect()
        self.reconnects = 0

    def _batch(self, cur, statements: list[tuple[str, tuple]]) -> None:
        # One round trip per batch, rows still inserted in the order the visitor produced them.
        cur.execute(b";".join(cur.mogrify(sql, params) for sql, params in statements))

    def write_session(self, plan: SessionPlan, session_id: str, ended_at: datetime) -> int | None:
        """Commit the session ending at `ended_at`; returns its transaction id, if it converted."""
        return self._transaction(lambda cur: self._session(cur, plan, session_id, ended_at))

    def apply(self, action: Action, at: datetime) -> int:
        """Apply one later change in its own transaction; returns the rows changed (0: state moved on)."""
        return self._transaction(lambda cur: self._action(cur, action, at))

    def _session(self, cur, plan: SessionPlan, session_id: str, ended_at: datetime) -> tuple[int | None, int]:
        """The session's statements; returns (its transaction id or None, the database transaction's xid)."""
        start = ended_at - timedelta(milliseconds=plan.duration_ms)

        def at(offset_ms: int) -> datetime:
            return start + timedelta(milliseconds=offset_ms)

        head = [(_INSERT_SESSION, (session_id, plan.customer_id, plan.device, start))]
        head += [_event_statement(e, session_id, plan.customer_id, at(e.at_ms)) for e in plan.events]
        tail = [(_END_SESSION, (ended_at, session_id))]
        if not plan.purchase:
            self._batch(cur, [*head, *tail, (_TXID, ())])
            return None, cur.fetchone()[0]
        p, paid_at = plan.purchase, at(plan.purchase.at_ms)
        head.append(
            (_INSERT_TRANSACTION, (plan.customer_id, session_id, p.total_amount, p.payment_method, paid_at, paid_at))
        )
        self._batch(cur, head)
        transaction_id, xid = cur.fetchone()
        items = [
            (_INSERT_ITEM, (transaction_id, i.product_id, i.quantity, i.unit_price, i.amount, paid_at)) for i in p.items
        ]
        self._batch(cur, [*items, *tail])
        return transaction_id, xid

    def _action(self, cur, action: Action, at: datetime) -> tuple[int, int | None]:
        sql, params = _action_statement(action, at)
        cur.execute(sql + " RETURNING txid_current()", params)
        rows = cur.rowcount
        # No row changed: nothing to commit, so a lost commit changes nothing either.
        return rows, cur.fetchone()[0] if rows else None

    def _transaction(self, work: Callable[[Any], tuple[Any, int | None]]):
        """Run work and commit; after a lost connection, reconnect and run it again unless it committed."""
        while True:
            xid = None  # set once work is done: a failure after that is in the commit itself
            try:
                with self.conn.cursor() as cur:
                    result, xid = work(cur)
                self.conn.commit()
                return result
            except _CONNECTION_ERRORS as err:
                if not self.conn.closed:
                    raise  # the database refused the statement: not a connection problem
                self._reconnect(err)
                if xid is not None and self._committed(xid):
                    _log.info("the transaction in flight had committed; not writing it again")
                    return result
                _log.info("the transaction in flight was rolled back; writing it again")

    def _reconnect(self, err: Exception) -> None:
        _log.warning("OLTP connection lost (%s); reconnecting", " ".join(str(err).split()))
        started = time.monotonic()
        delay = 0.5
        while True:
            try:
                self.conn = self._connect()
                break
            except psycopg2.OperationalError as again:
                if time.monotonic() - started + delay > self._reconnect_for:
                    raise GeneratorError(
                        f"OLTP database unreachable for {self._reconnect_for:.0f}s: {again}".strip()
                    ) from again
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.reconnects += 1
        _log.warning("reconnected to the OLTP database after %.1fs", time.monotonic() - started)

    def _committed(self, xid: int) -> bool:
        """Whether transaction xid committed: its outcome is final once no backend runs it any more."""
        deadline = time.monotonic() + self._reconnect_for
        with self.conn.cursor() as cur:
            while True:
                cur.execute("SELECT txid_status(%s)", (xid,))
                status = cur.fetchone()[0]
                self.conn.rollback()
                if status != "in progress":
                    return status == "committed"
                if time.monotonic() > deadline:  # its old backend never noticed that we left
                    raise GeneratorError(f"transaction {xid} still in progress on a lost connection")
                time.sleep(0.2)


def _event_statement(event: Event, session_id: str, customer_id: int, at: datetime) -> tuple[str, tuple]:
    match event:
        case PageView():
            return _INSERT_PAGE_VIEW, (session_id, customer_id, event.page_type, event.product_id, at)
        case Search():
            return _INSERT_SEARCH, (session_id, customer_id, event.query, event.results_count, at)
        case CartEvent():
            return _INSERT_CART_EVENT, (
                session_id,
                customer_id,
                event.product_id,
                event.action,
                event.quantity,
                event.unit_price,
                event.amount,
                at,
            )
    raise TypeError(event)


def _action_statement(action: Action, at: datetime) -> tuple[str, tuple]:
    # Each guard re-checks the state so a row someone else changed meanwhile is left alone.
    match action:
        case Settle():
            return (
                "UPDATE transactions SET status = %s, updated_at = %s WHERE transaction_id = %s AND status = 'pending'",
                (action.status, at, action.transaction_id),
            )
        case Refund():
            return (
                "UPDATE transactions SET status = 'refunded', updated_at = %s"
                " WHERE transaction_id = %s AND status = 'paid'",
                (at, action.transaction_id),
            )
        case DeleteTransaction():
            return (
                "DELETE FROM transactions WHERE transaction_id = %s AND status = 'failed'",
                (action.transaction_id,),
            )
        case DeleteSession():
            return "DELETE FROM sessions WHERE session_id = %s", (action.session_id,)
        case ChangePrice():
            return (
                "UPDATE products SET price = %s, updated_at = %s WHERE product_id = %s",
                (action.price, at, action.product_id),
            )
    raise TypeError(action)


# --- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorConfig:
    """One run: pacing, limits (whichever comes first), seed and catalog scale."""

    rate: float = 100.0  # row changes per second; 0 = as fast as possible
    duration: float | None = None  # seconds; None = no limit
    sessions: int | None = None  # None = no limit
    seed: int | None = None
    customers: int = 1000
    products: int = 200
    mix: OutcomeMix = OutcomeMix()
    lifecycle: LifecycleRates = LifecycleRates()
    # Off: commits don't wait for the WAL flush (~4x the sessions/s). Transactions stay atomic and CDC
    # sees the same changes; a Postgres crash may lose the last fraction of a second of generated rows.
    synchronous_commit: bool = True
    # How long to keep reconnecting after the connection was lost (a database restart) before giving up.
    reconnect_for: float = 120.0
    run_id: str = field(default_factory=lambda: secrets.token_hex(6))

    def __post_init__(self) -> None:
        checks = {
            "rate must be >= 0": self.rate >= 0,
            "duration must be > 0": self.duration is None or self.duration > 0,
            "sessions must be >= 1": self.sessions is None or self.sessions >= 1,
            "customers must be >= 1": self.customers >= 1,
            "products must be >= 1": self.products >= 1,
        }
        if failed := [message for message, ok in checks.items() if not ok]:
            raise ValueError("; ".join(failed))

    @property
    def session_prefix(self) -> str:
        return f"sess_{self.run_id}"


@dataclass
class Summary:
    run_id: str
    session_prefix: str
    seeded: dict[str, int] = field(default_factory=dict)
    sessions: Counter[str] = field(default_factory=Counter)  # by outcome
    inserted: Counter[str] = field(default_factory=Counter)  # rows by table
    updated: Counter[str] = field(default_factory=Counter)  # rows by kind of change
    deleted: Counter[str] = field(default_factory=Counter)  # rows by kind (cascades not counted)
    elapsed_s: float = 0.0
    stopped_by: str = ""
    reconnects: int = 0  # lost connections ridden out

    @property
    def session_count(self) -> int:
        return self.sessions.total()

    @property
    def row_changes(self) -> int:
        """The events the pacing counts: inserted, updated and deleted rows (about one CDC message each)."""
        return self.inserted.total() + self.updated.total() + self.deleted.total()

    def per_second(self, count: int) -> float:
        return count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def record_session(self, plan: SessionPlan) -> None:
        self.sessions[plan.outcome] += 1
        self.inserted.update(plan.row_counts())
        self.updated["sessions ended_at"] += 1

    def record_action(self, action: Action, rows: int) -> None:
        match action:
            case Settle():
                self.updated[f"transactions -> {action.status}"] += rows
            case Refund():
                self.updated["transactions -> refunded"] += rows
            case ChangePrice():
                self.updated["products price"] += rows
            case DeleteTransaction():
                self.deleted["failed transactions"] += rows
            case DeleteSession():
                self.deleted["bounced sessions"] += rows


class Pacer:
    """How long to wait so that `done` events took `done / rate` seconds; rate 0 never waits."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._clock, self._start = rate, clock, clock()

    def delay(self, done: int) -> float:
        if self._rate <= 0:
            return 0.0
        return max(0.0, self._start + done / self._rate - self._clock())


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM ask the loop to stop after the current session; a second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rng(seed: int | None, stream: str) -> random.Random:
    # Independent streams: seeding, sessions and later changes don't shift each other's draws.
    return random.Random(f"{seed}:{stream}") if seed is not None else random.Random()


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]generating"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )


def _stop_reason(config: GeneratorConfig, stop: threading.Event, done: int, elapsed: float) -> str | None:
    if stop.is_set():
        return "signal"
    if config.sessions is not None and done >= config.sessions:
        return "sessions"
    if config.duration is not None and elapsed >= config.duration:
        return "duration"
    return None


def _fraction(config: GeneratorConfig, done: int, elapsed: float) -> float:
    parts = [done / config.sessions if config.sessions else 0.0, elapsed / config.duration if config.duration else 0.0]
    return min(max(parts), 1.0)


def _apply_due(
    writer: ShopWriter, lifecycle: Lifecycle, catalog: Catalog, summary: Summary, tick: int, now: Callable[[], datetime]
) -> None:
    for action in lifecycle.due(tick, catalog):
        rows = writer.apply(action, now())
        summary.record_action(action, rows)
        if rows:
            lifecycle.on_applied(tick, action)
            if isinstance(action, ChangePrice):
                catalog.set_price(action.product_id, action.price)


def _loop(
    writer: ShopWriter,
    config: GeneratorConfig,
    summary: Summary,
    stop: threading.Event,
    progress: Progress,
    now: Callable[[], datetime],
) -> None:
    catalog = load_catalog(writer.conn)
    sessions_rng = _rng(config.seed, "sessions")
    lifecycle = Lifecycle(_rng(config.seed, "lifecycle"), config.lifecycle)
    task = progress.add_task("generate", total=100 if config.sessions or config.duration else None, stats="")
    started = time.monotonic()
    pacer = Pacer(config.rate)
    for tick in itertools.count():
        if reason := _stop_reason(config, stop, tick, time.monotonic() - started):
            summary.stopped_by = reason
            break
        plan = plan_session(sessions_rng, catalog, config.mix)
        session_id = f"{config.session_prefix}{tick:08x}"
        transaction_id = writer.write_session(plan, session_id, now())
        summary.record_session(plan)
        lifecycle.on_session(tick, plan.outcome, session_id, transaction_id)
        _apply_due(writer, lifecycle, catalog, summary, tick, now)
        elapsed = time.monotonic() - started
        summary.elapsed_s, summary.reconnects = elapsed, writer.reconnects
        progress.update(
            task,
            completed=100 * _fraction(config, tick + 1, elapsed),
            stats=f"{tick + 1} sessions · {summary.row_changes} events · "
            f"{summary.per_second(summary.row_changes):,.0f} ev/s",
        )
        if config.sessions is None or tick + 1 < config.sessions:
            remaining = config.duration - elapsed if config.duration else float("inf")
            stop.wait(max(0.0, min(pacer.delay(summary.row_changes), remaining)))
    summary.elapsed_s, summary.reconnects = time.monotonic() - started, writer.reconnects


def run(
    dsn: str,
    config: GeneratorConfig,
    *,
    console: Console | None = None,
    show_progress: bool = True,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = _utcnow,
) -> Summary:
    """Seed the catalog, then write sessions until the count, the duration or a stop signal."""
    stop = stop or threading.Event()
    summary = Summary(config.run_id, config.session_prefix)
    extra = {} if config.synchronous_commit else {"options": "-c synchronous_commit=off"}

    def connect():
        # The run id in the application name lets an operator (or a test) find this run's connection.
        name = f"instashop-generator-{config.run_id}"
        return psycopg2.connect(dsn, application_name=name, connect_timeout=10, **extra)

    with stop_on_signals(stop):
        try:
            writer = ShopWriter(connect, config.reconnect_for)
        except psycopg2.Error as err:
            raise GeneratorError(f"cannot connect to the OLTP database: {err}".strip()) from err
        try:
            catalog_rng = _rng(config.seed, "catalog")
            summary.seeded = seed_catalog(writer.conn, catalog_rng, config.customers, config.products)
            _log.info("generator run %s started: session ids %s*", config.run_id, config.session_prefix)
            with _progress(console, show_progress) as progress:
                _loop(writer, config, summary, stop, progress, now)
        except psycopg2.Error as err:
            raise GeneratorError(f"OLTP database error: {err}".strip()) from err
        finally:
            writer.conn.close()
    return summary


def summary_table(summary: Summary) -> Table:
    table = Table("rows", "count", "per second", title=f"generator run {summary.run_id}")
    rows = [(f"seeded {name}", n) for name, n in summary.seeded.items()]
    rows += [("sessions", summary.session_count)]
    rows += [(f"  {outcome}", summary.sessions[outcome]) for outcome in OUTCOMES]
    rows += [(f"inserted {name}", n) for name, n in sorted(summary.inserted.items())]
    rows += [(f"updated {name}", n) for name, n in sorted(summary.updated.items())]
    rows += [(f"deleted {name}", n) for name, n in sorted(summary.deleted.items())]
    rows += [("row changes (events)", summary.row_changes)]
    for name, n in rows:
        rate = summary.per_second(n) if name in ("sessions", "row changes (events)") else None
        table.add_row(name, f"{n:,}", f"{rate:,.1f}" if rate is not None else "")
    table.add_section()
    table.add_row("session ids", f"{summary.session_prefix}*", "")
    table.add_row("stopped by", summary.stopped_by, f"after {summary.elapsed_s:.1f} s")
    if summary.reconnects:
        table.add_row("reconnects", str(summary.reconnects), "")
    return table
