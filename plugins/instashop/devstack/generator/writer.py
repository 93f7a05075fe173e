"""`ShopWriter`: turns session plans and later changes into SQL on the OLTP database.

Each session is one database transaction, as the shop app would record a visit; each later change gets
its own small transaction. The writer rides through a database restart (reconnects) and gives up with
`GeneratorError` when the database stays away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extras

from instashop.devstack.generator.lifecycle import Action, ChangePrice, DeleteSession, DeleteTransaction, Refund, Settle
from instashop.devstack.generator.sessions import CartEvent, Event, PageView, Search, SessionPlan

_log = logging.getLogger(__name__)


class GeneratorError(Exception):
    """The generator cannot go on (database unreachable, a statement failed)."""


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

        head: list[tuple[str, tuple[Any, ...]]] = [
            (_INSERT_SESSION, (session_id, plan.customer_id, plan.device, start))
        ]
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
