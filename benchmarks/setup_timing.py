"""Wall time of `make setup` on warm caches, and of `make up` from a stopped stack to all-healthy.

    .venv/bin/python -m benchmarks.setup_timing

Stops the pipeline jobs and every service first (`make down`: data is kept), then times `make up`
(set-up check, services started and awaited healthy, migrations, partitions). Jobs stay stopped
afterwards: start them again with `instashop jobs start`. Saves var/bench/setup_timing.json.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.report import save_results

console = Console()
REPO = Path(__file__).resolve().parents[1]


def timed(*argv: str) -> float:
    """Seconds `argv` took; its output goes to var/bench/setup_timing.log, a failure stops the benchmark."""
    log = REPO / "var" / "bench" / "setup_timing.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with console.status(" ".join(argv)), log.open("a") as out:
        result = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        raise SystemExit(f"`{' '.join(argv)}` failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - started


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    figures = {"make_setup_warm_s": timed("make", "--no-print-directory", "setup")}
    timed("make", "--no-print-directory", "down")
    figures["make_up_to_healthy_s"] = timed("make", "--no-print-directory", "up")
    table = Table("step", "wall time", title="Set-up")
    table.add_row("make setup (warm caches)", f"{figures['make_setup_warm_s']:.1f} s")
    table.add_row("make up (stopped -> all healthy, migrated)", f"{figures['make_up_to_healthy_s']:.1f} s")
    console.print(table)
    console.print(f"saved {save_results('setup_timing', {k: round(v, 1) for k, v in figures.items()})}")


if __name__ == "__main__":
    main()
