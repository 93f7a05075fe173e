"""How closely the generator holds its `--rate` (row changes per second) on this machine.

    .venv/bin/python -m benchmarks.generator_rate [--rates 100,400,1000] [--seconds 10]

One run per rate against the shop database (its own seed and run id, like any generator run), then a
table of the asked and achieved rates. The figure depends on the machine's load, so it is printed,
not judged: the benchmark fails (exit 1) only when a run is broken (it stopped for another reason
than its duration, or wrote nothing). Saves var/bench/generator_rate.json.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from benchmarks.report import save_results
from instashop.devstack import generator
from instashop.settings import load_settings

console = Console()


def measure(dsn: str, rate: float, seconds: float) -> generator.Summary:
    config = generator.GeneratorConfig(rate=rate, duration=seconds, seed=7, customers=50, products=40)
    return generator.run(dsn, config, show_progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,400,1000", help="row changes per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run")
    args = parser.parse_args()
    dsn = load_settings().oltp_dsn
    table = Table("asked /s", "achieved /s", "ratio", "row changes", "seconds", title="Generator rate")
    figures, broken = [], []
    for rate in (float(r) for r in args.rates.split(",")):
        run = measure(dsn, rate, args.seconds)
        achieved = run.per_second(run.row_changes)
        figures.append({"rate": rate, "achieved": round(achieved, 1), "row_changes": run.row_changes})
        figures[-1] |= {"seconds": round(run.elapsed_s, 2), "stopped_by": run.stopped_by}
        cells = (f"{rate:,.0f}", f"{achieved:,.1f}", f"{achieved / rate:.3f}", f"{run.row_changes:,}")
        table.add_row(*cells, f"{run.elapsed_s:.1f}")
        if run.stopped_by != "duration" or run.row_changes == 0:
            broken.append(f"rate {rate:g}: stopped by {run.stopped_by!r} after {run.row_changes} row changes")
    console.print(table)
    console.print(f"saved {save_results('generator_rate', {'seconds': args.seconds, 'runs': figures})}")
    if broken:
        raise SystemExit("broken run: " + "; ".join(broken))


if __name__ == "__main__":
    main()
