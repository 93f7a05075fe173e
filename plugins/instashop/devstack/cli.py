"""The developer tooling's commands, added to `instashop` through the `instashop.commands` entry
point group (pyproject.toml): .env for the local stack, the stack itself, demo traffic, the soak."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TypeVar

import click
from rich.table import Table

from instashop.cli import console
from instashop.devstack import env_file, manager
from instashop.settings import load_settings

COMMANDS: list[click.Command] = []
CommandT = TypeVar("CommandT", bound=click.Command)


def command(fn: CommandT) -> CommandT:
    """Lists a command among those the `instashop.commands` entry point hands to the CLI."""
    COMMANDS.append(fn)
    return fn


# --- .env --------------------------------------------------------------------------------------


@command
@click.command("init-env")
def init_env() -> None:
    """Write .env with random secrets, or add the keys an existing one lacks (values never change)."""
    existed = env_file.ENV_FILE.exists()
    added = env_file.write_env_file()
    if not existed:
        click.echo(f"wrote {env_file.ENV_FILE} with fresh random secrets")
    elif added:
        click.echo(f"{env_file.ENV_FILE}: added {', '.join(added)}")
    else:
        click.echo(f"{env_file.ENV_FILE} is complete; left unchanged")


# --- local stack -------------------------------------------------------------------------------


@command
@click.group()
def stack() -> None:
    """Start, stop and inspect the local services."""


def _run(action, *args) -> None:
    try:
        action(load_settings(), *args)
    except (manager.StackError, FileNotFoundError) as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)


@stack.command()
@click.argument("services", nargs=-1)
def up(services: tuple[str, ...]) -> None:
    """Start SERVICES (default: all) and wait until healthy; a running service is left alone."""
    _run(manager.up, services)


@stack.command()
@click.argument("services", nargs=-1)
def down(services: tuple[str, ...]) -> None:
    """Stop SERVICES (default: all); data is kept."""
    _run(manager.down, services)


@stack.command()
@click.argument("services", nargs=-1)
def status(services: tuple[str, ...]) -> None:
    """A table of service, port, supervisord state, pid and health; exits 1 unless all are healthy."""
    rows = manager.status(load_settings(), services)
    table = Table("service", "port", "state", "pid", "healthy", "log")
    for row in rows:
        healthy = "[green]yes[/]" if row.healthy else "[red]no[/]"
        table.add_row(row.name, str(row.port or "-"), row.state, str(row.pid or "-"), healthy, row.log_file)
    console.print(table)
    sys.exit(0 if all(r.healthy for r in rows) else 1)


@stack.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep following the logs.")
@click.option("-n", "--lines", default=20, show_default=True, help="Lines per service.")
def logs(services: tuple[str, ...], follow: bool, lines: int) -> None:
    """The last lines of each service's log."""
    settings = load_settings()
    if follow:
        manager.follow_logs(settings, services)
        return
    for name, text in manager.log_tails(settings, services, lines).items():
        console.rule(name)
        console.print(text, markup=False, highlight=False)


@stack.command()
def clean() -> None:
    """Stop everything and delete all data and logs (asks first unless FORCE=1)."""
    settings = load_settings()
    if os.environ.get("FORCE") != "1":
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to delete data without confirmation: run with FORCE=1")
        click.confirm(f"Delete every database, topic and log under {settings.var_dir}?", abort=True)
    _run(lambda s: manager.clean(s))


@stack.command()
def urls() -> None:
    """Where each service answers, and where the logins come from."""
    settings = load_settings()
    for service in manager.select(settings):
        for url in service.urls():
            console.print(f"[bold]{service.name:<18}[/] {url}", highlight=False)


# --- workload generator -------------------------------------------------------------------------


@command
@click.command()
@click.option(
    "--rate",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Target events (row changes) per second; 0 = as fast as possible.",
)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@click.option("--sessions", type=click.IntRange(min=1), help="Stop after this many sessions.")
@click.option("--seed", type=int, help="Seed: the same seed on the same data writes the same workload.")
@click.option(
    "--customers", default=1000, show_default=True, type=click.IntRange(min=1), help="Top customers up to this many."
)
@click.option(
    "--products", default=200, show_default=True, type=click.IntRange(min=1), help="Top products up to this many."
)
@click.option(
    "--async-commit",
    is_flag=True,
    help="Don't wait for each commit's WAL flush (~4x faster, for load tests; a crash may lose the last rows).",
)
def generate(
    rate: float,
    duration: float | None,
    sessions: int | None,
    seed: int | None,
    customers: int,
    products: int,
    async_commit: bool,
) -> None:
    """Write shop sessions into the OLTP database until --duration or --sessions (Ctrl-C stops cleanly)."""
    from instashop.devstack import generator

    options = generator.GeneratorConfig(
        rate=rate,
        duration=duration,
        sessions=sessions,
        seed=seed,
        customers=customers,
        products=products,
        synchronous_commit=not async_commit,
    )
    try:
        summary = generator.run(load_settings().oltp_dsn, options, console=console)
    except (generator.GeneratorError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    console.print(generator.summary_table(summary))


# --- fault injection --------------------------------------------------------------------------------


@command
@click.command()
@click.option("--duration", default=420.0, show_default=True, type=click.FloatRange(min=30), help="Seconds of load.")
@click.option("--rate", default=100.0, show_default=True, type=click.FloatRange(min=1), help="Generator events/s.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the report (default var/bench/chaos.json).",
)
@click.option("--seed", type=int, help="Seed of the generator's workload.")
def chaos(duration: float, rate: float, json_path: Path | None, seed: int | None) -> None:
    """Fault-injection soak of the running pipeline (make demo): kill and restart each piece under load,
    then check that nothing was lost or doubled. Exits 1 on any difference or unrecovered fault."""
    from instashop.devstack import chaos as soak

    settings = load_settings()
    options = soak.ChaosConfig(duration=duration, rate=rate, seed=seed)
    try:
        report = soak.run(settings, options, json_path or settings.var_dir / "bench" / "chaos.json", console)
    except soak.ChaosError as err:
        raise click.ClickException(str(err)) from None
    sys.exit(0 if report.passed else 1)
