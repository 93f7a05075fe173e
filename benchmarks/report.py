"""Shared by the benchmarks: save results as JSON with the machine they ran on, and draw bar charts.

    from benchmarks.report import bar_chart, save_results

JSON and PNG files go under var/bench/ (git-ignored), named after the benchmark.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on the servers that run benchmarks

import matplotlib.pyplot as plt  # after the backend is chosen

BENCH_DIR = Path(__file__).resolve().parents[1] / "var" / "bench"


def machine() -> dict[str, Any]:
    """Cores, RAM and CPU model: numbers only mean something next to the machine they came from."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cores": os.cpu_count(), "ram_gib": round(ram / 2**30, 1), "cpu_model": cpu}


def save_results(name: str, results: dict[str, Any]) -> Path:
    """Write var/bench/<name>.json with the results, when they were measured and on what machine."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}.json"
    document = {"measured_at": datetime.now(UTC).isoformat(), "machine": machine(), **results}
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


def bar_chart(
    path: Path,
    title: str,
    groups: list[str],
    series: dict[str, list[float | None]],
    *,
    ylabel: str = "ms",
    threshold: float | None = None,
    log_scale: bool = False,
) -> Path:
    """Grouped bars: one group per label in `groups`, one bar per series (None: no bar)."""
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(groups) + 2), 5.5))
    width = 0.8 / max(len(series), 1)
    for n, (label, values) in enumerate(series.items()):
        xs = [i + (n - (len(series) - 1) / 2) * width for i, v in enumerate(values) if v is not None]
        ax.bar(xs, [v for v in values if v is not None], width, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="red", linestyle="--", linewidth=1, label=f"target {threshold:g} {ylabel}")
    if log_scale:
        ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
