"""The shop's catalog: made-up customers and products, seeded once into the OLTP database and read back.

Pure helpers (`customer_row`, `product_row`, `reprice`) decide the values from a `random.Random`, so a seed
reproduces them; `seed_catalog` and `load_catalog` are the only parts that touch the database.
"""

from __future__ import annotations

import itertools
import logging
import random
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg2
import psycopg2.extras

_log = logging.getLogger(__name__)


CENT = Decimal("0.01")

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

# Spanish-speaking markets first, as the shop's; a few others.
_FIRST_NAMES = ("Ana", "Lucía", "Sofía", "Camila", "María", "Emma", "Mateo", "Diego", "Juan", "Tomás", "Liam")
_LAST_NAMES = ("García", "Martínez", "López", "Pérez", "Gómez", "Silva", "Smith", "Brown", "Müller", "Rossi")
_COUNTRIES = ("AR", "ES", "MX", "CO", "CL", "US", "BR", "GB", "DE", "FR")
_COUNTRY_WEIGHTS = (18, 16, 14, 10, 8, 12, 8, 5, 5, 4)


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
