"""The soak's report: per-fault results, the final comparisons, the verdict and the console tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

# --- the report -----------------------------------------------------------------------------------


@dataclass
class FaultResult:
    component: str  # one of FAULTS
    fault: str  # what was done, e.g. "SIGKILL consumer"
    at_s: float  # seconds into the soak
    restarted_by: str
    healthy_s: float | None = None  # the piece itself is back
    recovery_s: float | None = None  # ... and a change made after the fault came out of its data path
    notes: list[str] = field(default_factory=list)

    @property
    def recovered(self) -> bool:
        return self.recovery_s is not None


@dataclass
class Report:
    started_at: str
    config: dict[str, Any]
    load_s: float = 0.0
    total_s: float = 0.0
    generator: dict[str, Any] = field(default_factory=dict)
    faults: list[FaultResult] = field(default_factory=list)
    poison: list[dict[str, Any]] = field(default_factory=list)
    dwh: dict[str, Any] = field(default_factory=dict)  # cells compared, differing cells
    live: dict[str, Any] = field(default_factory=dict)  # windows compared, differing figures
    dlq: dict[str, Any] = field(default_factory=dict)  # expected and found source offsets
    end_health: dict[str, bool] = field(default_factory=dict)  # every piece, once the checks are done
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def verdict(report: Report) -> list[str]:
    """Every reason the soak failed; empty when the pipeline took every fault without a difference."""
    problems = [f"{f.fault} did not recover" for f in report.faults if not f.recovered]
    if report.generator.get("error"):
        problems.append(f"the generator died: {report.generator['error']}")
    if report.dwh.get("diff") or not report.dwh.get("cells"):
        problems.append(f"DWH differs from the OLTP truth in {len(report.dwh.get('diff', []))} (type, day) cells")
    if report.live.get("diff") or not report.live.get("windows"):
        problems.append(f"Redis differs from the DWH in {len(report.live.get('diff', []))} window figures")
    expected = {tuple(e) for e in report.dlq.get("expected", [])}
    if not expected:
        problems.append("no poison message was injected")
    problems += [f"{piece} is not healthy at the end" for piece, healthy in report.end_health.items() if not healthy]
    for where in ("table", "topic"):
        if {tuple(e) for e in report.dlq.get(where, [])} != expected:
            problems.append(f"the DLQ {where} does not hold exactly the poison injected")
    return problems


def fault_table(report: Report) -> Table:
    table = Table("fault", "at", "restarted by", "healthy after", "recovery", "notes", title="chaos soak: faults")
    for f in report.faults:
        table.add_row(
            f.fault,
            f"{f.at_s:.0f} s",
            f.restarted_by,
            format_seconds(f.healthy_s),
            format_seconds(f.recovery_s) if f.recovered else "[red]not recovered[/]",
            "; ".join(f.notes),
        )
    return table


def diff_table(report: Report) -> Table:
    table = Table("check", "compared", "differences", "result", title="chaos soak: final diff (must be zero)")
    expected = {tuple(e) for e in report.dlq.get("expected", [])}
    rows = [
        ("DWH = OLTP per event type and day", f"{report.dwh.get('cells', 0)} cells", len(report.dwh.get("diff", []))),
        (
            "Redis = DWH per minute of the soak",
            f"{report.live.get('windows', 0)} windows",
            len(report.live.get("diff", [])),
        ),
    ]
    for where in ("table", "topic"):
        found = {tuple(e) for e in report.dlq.get(where, [])}
        rows.append((f"DLQ {where} = poison injected", f"{len(expected)} messages", len(found ^ expected)))
    unhealthy = [piece for piece, healthy in report.end_health.items() if not healthy]
    rows.append(("every piece healthy at the end", f"{len(report.end_health)} pieces", len(unhealthy)))
    for check, compared, differences in rows:
        result = "[green]ok[/]" if differences == 0 else "[red]DIFFERS[/]"
        table.add_row(check, compared, str(differences), result)
    return table


def cells_table(report: Report) -> Table:
    columns = ("event type", "day", "OLTP rows", "DWH rows", "OLTP amount", "DWH amount", "diff")
    table = Table(*columns, title="chaos soak: DWH vs OLTP per event type and day")
    for cell in report.dwh.get("cells_detail", []):
        same = (cell["oltp_rows"], cell["oltp_amount"]) == (cell["dwh_rows"], cell["dwh_amount"])
        values = [cell["type"], cell["day"], f"{cell['oltp_rows']:,}", f"{cell['dwh_rows']:,}"]
        table.add_row(*values, cell["oltp_amount"], cell["dwh_amount"], "[green]0[/]" if same else "[red]differs[/]")
    return table


def format_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
