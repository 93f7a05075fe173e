"""One table of the headline figures of the last benchmark runs, next to their goals.

    .venv/bin/python -m benchmarks.summary

Reads var/bench/*.json (written by the other benchmarks; a benchmark not run shows as such),
prints the table and saves var/bench/summary.json. docs/performance.md's "Latest results" is this table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.report import BENCH_DIR, save_results

console = Console(width=150)
Row = tuple[str, str, str, bool | None]  # measure, figure, goal, met (None: no goal)


def load(name: str) -> dict[str, Any] | None:
    path = BENCH_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def throughput_rows(r: dict[str, Any]) -> list[Row]:
    consumer, sink, copy = r["consumer_events_per_s"], r["jdbc_sink_events_per_s"], r["copy_rows_per_s"]
    return [
        (
            f"ingest, {r['events']:,} CDC events: our consumer",
            f"{consumer:,.0f} events/s",
            ">= 20,000",
            consumer >= 20000,
        ),
        ("ingest: Debezium JDBC sink (peer)", f"{sink:,.0f} events/s", "", None),
        ("ingest: consumer / JDBC sink", f"{consumer / sink:.2f}x", ">= 5x", consumer >= 5 * sink),
        ("ingest: COPY ceiling", f"{copy:,.0f} rows/s", "", None),
        ("ingest: consumer / COPY", f"{consumer / copy:.0%}", ">= 50 %", consumer >= 0.5 * copy),
        ("ingest: naive INSERT+COMMIT per row", f"{r['naive_rows_per_s']:,.0f} rows/s", "", None),
    ]


def latency_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for rate in r["rates"]:
        for path, label in (("dwh", "DWH row"), ("redis", "Redis metric")):
            p = rate[path]
            goal = "p99 < 1 s" if rate["rate"] == 1000 else ""
            met = (p["p99_ms"] is not None and p["p99_ms"] < 1000) if goal else None
            figure = f"p50 {_ms(p['p50_ms'])} / p95 {_ms(p['p95_ms'])} / p99 {_ms(p['p99_ms'])} ms"
            rows.append((f"commit -> {label} at {rate['rate']:,.0f} events/s", figure, goal, met))
    sustained = r.get("max_sustained_rate")
    rows.append(("max sustained rate, both paths", f"{sustained:,} events/s" if sustained else "-", "", None))
    return rows


def query_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [("warehouse size", f"{r['rows']:,} events, {r['partitions']} partitions", "", None)]
    for q in r["queries"]:
        part, flat = q["partitioned"], q.get("unpartitioned")
        versus = f" (unpartitioned {_ms(flat['warm_ms'])} ms)" if flat else ""
        met = part["warm_ms"] < r["target_ms"]
        figure = f"{_ms(part['warm_ms'])} ms warm, {_ms(part['cold_ms'])} ms cold{versus}"
        rows.append((f"query {q['query']} ({q['kind']})", figure, "< 500 ms warm", met))
    return rows


def setup_rows(r: dict[str, Any]) -> list[Row]:
    return [
        ("make setup, warm caches", f"{r['make_setup_warm_s']:.1f} s", "", None),
        ("make up, stopped -> all healthy", f"{r['make_up_to_healthy_s']:.1f} s", "", None),
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "consumer_throughput": throughput_rows,
    "e2e_latency": latency_rows,
    "warehouse_queries": query_rows,
    "setup_timing": setup_rows,
}


def main() -> None:
    table = Table("benchmark", "measure", "figure", "goal", "met", title="InstaShop DWH benchmarks")
    summary: dict[str, Any] = {}
    for name, rows_of in SECTIONS.items():
        results = load(name)
        if results is None:
            table.add_row(name, "not run", "", "", "")
            continue
        rows = rows_of(results)
        summary[name] = {"measured_at": results["measured_at"], "rows": rows}
        for i, (measure, figure, goal, met) in enumerate(rows):
            verdict = "" if met is None else ("yes" if met else "[red]no[/]")
            table.add_row(name if i == 0 else "", measure, figure, goal, verdict)
        table.add_section()
    console.print(table)
    console.print(f"saved {save_results('summary', summary)}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
