"""The health of the shop database's replication slot, the one Debezium streams from.

The slot is where CDC silently goes wrong: dropped (by a DBA's clean-up, a failover to a replica
without it) Debezium makes a new one on its next start and streams from then on, so every change
in between is never captured; left without a client it retains WAL until the shop's disk fills;
past `max_slot_wal_keep_size` PostgreSQL invalidates it (wal_status `lost`) and it can never
stream again. None of these is something we may heal behind the DBA's back: the check reports
what it saw, with the commands to run, and the stream_supervisor task turns red.

Read from pg_replication_slots, which any role may read (`instashop_oltp_read` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from instashop.ops.supervisor import DEGRADED, DOWN, HEALTHY, Check

# Retained WAL past this is reported as degraded (the shop's disk pays for every byte of it).
MAX_RETAINED_BYTES = 1024**3
COMPONENT = "replication_slot"

_QUERY = """
SELECT active, wal_status, safe_wal_size,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = %s
"""


@dataclass(frozen=True)
class SlotState:
    active: bool  # a client (Debezium's walsender) streams from it now
    wal_status: str  # reserved, extended, unreserved, lost
    retained_bytes: int  # WAL kept for it: from its restart_lsn to the current position
    unconfirmed_bytes: int  # WAL the client has not confirmed yet (its flush lag)
    safe_wal_size: int | None  # bytes left before max_slot_wal_keep_size invalidates it; None: no limit


def connector_slot() -> str:
    """The slot the Debezium connector's config names."""
    from instashop.capture import connector

    return str(connector.load_config()["slot.name"])


def read_slot(conn, slot: str) -> SlotState | None:
    """The slot's state on the shop database, or None when it does not exist."""
    with conn, conn.cursor() as cur:
        cur.execute(_QUERY, (slot,))
        row = cur.fetchone()
    if row is None:
        return None
    active, wal_status, safe_wal_size, retained, unconfirmed = row
    return SlotState(bool(active), str(wal_status), int(retained or 0), int(unconfirmed or 0), safe_wal_size)


def assess_slot(slot: str, state: SlotState | None, max_retained: int = MAX_RETAINED_BYTES) -> tuple[str, str]:
    """(status, reason with what to do) of the slot; pure."""
    if state is None:
        return DOWN, (
            f"replication slot {slot} does not exist on the shop database: the connector streams nothing, and "
            "when it restarts it makes a new slot and goes on from that moment, so changes made meanwhile are "
            "never captured. Run `instashop connector restart`, then trigger `dwh_reconciliation` "
            "(Airflow UI: Trigger DAG) to find the rows that differ"
        )
    if state.wal_status == "lost":
        return DOWN, (
            f"replication slot {slot} was invalidated (wal_status lost: it retained more than "
            "max_slot_wal_keep_size) and can never stream again. As a superuser or its owner run "
            f"`SELECT pg_drop_replication_slot('{slot}');`, then `instashop connector restart` and trigger "
            "`dwh_reconciliation`"
        )
    if state.retained_bytes > max_retained:
        why = "the connector is behind" if state.active else "no client streams from it"
        return DEGRADED, (
            f"replication slot {slot} retains {state.retained_bytes / 1024**2:.0f} MB of WAL (limit "
            f"{max_retained / 1024**2:.0f} MB): {why}; see `instashop connector status`"
        )
    if not state.active:
        return DEGRADED, f"no client streams from replication slot {slot}: see `instashop connector status`"
    return HEALTHY, ""


def check_slot(conn, slot: str, max_retained: int = MAX_RETAINED_BYTES) -> Check:
    """Observe the slot and say what was seen (never acts: see the module's docstring)."""
    state = read_slot(conn, slot)
    status, reason = assess_slot(slot, state, max_retained)
    return Check(COMPONENT, status, details={"slot": slot, **details(state), "reason": reason})


def details(state: SlotState | None) -> dict[str, Any]:
    if state is None:
        return {"exists": False}
    return {
        "exists": True,
        "active": state.active,
        "wal_status": state.wal_status,
        "retained_wal_bytes": state.retained_bytes,
        "unconfirmed_wal_bytes": state.unconfirmed_bytes,
        "safe_wal_size": state.safe_wal_size,
    }
