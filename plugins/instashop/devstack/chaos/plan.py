"""What a chaos soak does, decided up front: its configuration, the fault schedule, the poison messages
and the generator load. Pure, so it is unit-tested without a pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from instashop.devstack import generator
from instashop.devstack.generator.lifecycle import LifecycleRates
from instashop.warehouse import reconciliation

FAULTS = ("consumer", "spark", "connect", "kafka", "postgres")
POISON = "poison"
POISON_TOPIC = "instashop.public.transactions"


@dataclass(frozen=True)
class ChaosConfig:
    duration: float = 420.0  # seconds of load at least; faults are spread over it
    rate: float = 100.0  # generator events per second
    faults: tuple[str, ...] = FAULTS
    recovery_timeout: float = 300.0  # per fault
    drain_timeout: float = 300.0  # for the DWH, then again for Redis, after the generator stopped
    seed: int | None = None


# --- the plan (pure) ------------------------------------------------------------------------------


def schedule(duration: float, faults: Sequence[str]) -> list[tuple[float, str]]:
    """(seconds into the soak, step): the faults evenly spread, the poison after the first half of them."""
    half = (len(faults) + 1) // 2
    steps = [*faults[:half], POISON, *faults[half:]]
    return [(round(duration * (k + 1) / (len(steps) + 1), 1), step) for k, step in enumerate(steps)]


def poison_messages(tag: str) -> dict[str, tuple[bytes, bytes]]:
    """name -> (key, value): a well-formed Debezium key each, so the value alone is what makes it poison."""

    def key(name: str) -> bytes:
        return json.dumps({"transaction_id": 1, "poison": f"{tag}-{name}"}).encode()

    def envelope(table: str, after: dict[str, Any]) -> bytes:
        source = {"table": table, "schema": "public", "lsn": 1, "ts_ms": 0, "snapshot": "false"}
        return json.dumps({"before": None, "after": after, "op": "c", "source": source}).encode()

    row = {
        "transaction_id": 1,
        "customer_id": 1,
        "session_id": None,
        "payment_method": "card",
        "status": "pending",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    return {
        "invalid-json": (key("invalid-json"), b'{"op": "c", "after": {'),
        "unknown-table": (key("unknown-table"), envelope("unicorns", {"id": 1})),
        "wrong-type": (key("wrong-type"), envelope("transactions", {**row, "total_amount": 12.5})),  # a float
    }


def load_config(config: ChaosConfig) -> generator.GeneratorConfig:
    """The soak's shop traffic: the usual lifecycle (payments settle, fail, are refunded; prices change)
    but no deletes. Redis counts what was placed and the DWH holds what still exists, so with nothing
    deleted every live figure must equal the DWH's: a row counted twice after a kill is a difference."""
    lifecycle = replace(LifecycleRates(), delete_failed=0.0, delete_bounce=0.0)
    return generator.GeneratorConfig(rate=config.rate, seed=config.seed, lifecycle=lifecycle)


def live_differences(
    in_redis: dict[int, dict[str, Any]], in_dwh: dict[int, dict[str, Any]], window: reconciliation.Window
) -> list[reconciliation.LiveMismatch]:
    """Redis against the DWH over the soak: every figure equal (its load deletes nothing)."""
    return reconciliation.diff_live(in_redis, in_dwh, window, exact=True)
