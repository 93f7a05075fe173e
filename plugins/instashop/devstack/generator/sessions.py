"""What one visitor does in a session: pure functions of a `random.Random` and the catalog.

`plan_session` decides the outcome (conversion, cart abandonment, bounce) and the events that lead to
it, with timestamps relative to the session start, so the plans are unit-testable without a database.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from instashop.devstack.generator.catalog import CATEGORIES, CENT, Catalog, Product

CONVERSION, CART_ABANDONMENT, BOUNCE = "conversion", "cart_abandonment", "bounce"
OUTCOMES = (CONVERSION, CART_ABANDONMENT, BOUNCE)

_SEARCH_MODIFIERS = ("", "", "best ", "cheap ", "gift ", "sale ", "new ")

_DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_WEIGHTS = (55, 35, 10)
_PAYMENT_METHODS = ("credit_card", "debit_card", "paypal", "apple_pay", "bank_transfer")
_PAYMENT_WEIGHTS = (50, 20, 15, 10, 5)
_LANDING_PAGES = ("home", "category", "product")
_LANDING_WEIGHTS = (50, 20, 30)
_QUANTITIES = (1, 2, 3, 4, 5)
_QUANTITY_WEIGHTS = (75, 17, 5, 2, 1)


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
