"""What a generator run wrote: counts per table and outcome, and the table printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.table import Table

from instashop.devstack.generator.lifecycle import Action, ChangePrice, DeleteSession, DeleteTransaction, Refund, Settle
from instashop.devstack.generator.sessions import OUTCOMES, SessionPlan


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
