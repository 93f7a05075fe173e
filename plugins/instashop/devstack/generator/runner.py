"""The generator's run loop: pacing, limits, signals and progress around `ShopWriter`."""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

from instashop.devstack.generator.catalog import Catalog, load_catalog, seed_catalog
from instashop.devstack.generator.lifecycle import ChangePrice, Lifecycle, LifecycleRates
from instashop.devstack.generator.sessions import OutcomeMix, plan_session
from instashop.devstack.generator.summary import Summary
from instashop.devstack.generator.writer import GeneratorError, ShopWriter

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorConfig:
    """One run: pacing, limits (whichever comes first), seed and catalog scale."""

    rate: float = 100.0  # row changes per second; 0 = as fast as possible
    duration: float | None = None  # seconds; None = no limit
    sessions: int | None = None  # None = no limit
    seed: int | None = None
    customers: int = 1000
    products: int = 200
    # Both are frozen dataclasses, so one shared default instance is safe; ruff can't see that across modules.
    mix: OutcomeMix = OutcomeMix()  # noqa: RUF009
    lifecycle: LifecycleRates = LifecycleRates()  # noqa: RUF009
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
    extra: dict[str, Any] = {} if config.synchronous_commit else {"options": "-c synchronous_commit=off"}

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
