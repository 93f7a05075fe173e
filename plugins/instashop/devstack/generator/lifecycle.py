"""What later happens to a session's rows: payments settle or are refunded, failed payments and bounced
sessions are cleaned up, prices change. Pure decisions, scheduled in session ticks by the run loop.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from decimal import Decimal

from instashop.devstack.generator.catalog import Catalog, reprice
from instashop.devstack.generator.sessions import BOUNCE


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
