"""The `instashop` command: operate the local stack and the pipelines."""

from __future__ import annotations

import logging
import os
import sys

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from instashop import config, migrations
from instashop.stack import manager

console = Console()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """InstaShop DWH command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


# --- .env --------------------------------------------------------------------------------------


@main.command("init-env")
def init_env() -> None:
    """Write .env with random secrets unless it already exists."""
    if config.write_env_file():
        click.echo(f"wrote {config.ENV_FILE} with fresh random secrets")
    else:
        click.echo(f"{config.ENV_FILE} exists; left unchanged")


# --- local stack -------------------------------------------------------------------------------


@main.group()
def stack() -> None:
    """Start, stop and inspect the local services."""


def _run(action, *args) -> None:
    try:
        action(config.load_settings(), *args)
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
    """A table of service, port, pid and health; exits 1 unless all are healthy."""
    rows = manager.status(config.load_settings(), services)
    table = Table("service", "port", "pid", "healthy", "log")
    for row in rows:
        healthy = "[green]yes[/]" if row.healthy else "[red]no[/]"
        table.add_row(row.name, str(row.port or "-"), str(row.pid or "-"), healthy, row.log_file)
    console.print(table)
    sys.exit(0 if all(r.healthy for r in rows) else 1)


@stack.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep following the logs.")
@click.option("-n", "--lines", default=20, show_default=True, help="Lines per service.")
def logs(services: tuple[str, ...], follow: bool, lines: int) -> None:
    """The last lines of each service's log."""
    settings = config.load_settings()
    if follow:
        manager.follow_logs(settings, services)
        return
    for name, text in manager.log_tails(settings, services, lines).items():
        console.rule(name)
        console.print(text, markup=False, highlight=False)


@stack.command()
def clean() -> None:
    """Stop everything and delete all data and logs (asks first unless FORCE=1)."""
    settings = config.load_settings()
    if os.environ.get("FORCE") != "1":
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to delete data without confirmation: run with FORCE=1")
        click.confirm(f"Delete every database, topic and log under {settings.var_dir}?", abort=True)
    _run(lambda s: manager.clean(s))


@stack.command()
def urls() -> None:
    """Where each service answers, and where the logins come from."""
    settings = config.load_settings()
    for service in manager.select(settings):
        for url in service.urls():
            console.print(f"[bold]{service.name:<18}[/] {url}", highlight=False)


# --- database schemas ---------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schemas of the OLTP source and the DWH."""


@db.command()
def migrate() -> None:
    """Apply pending sql/oltp and sql/dwh migrations, in order (idempotent)."""
    try:
        applied = migrations.migrate(config.load_settings())
    except migrations.MigrationError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
    click.echo(f"applied {len(applied)} migration(s)" if applied else "schemas are up to date")


if __name__ == "__main__":
    main()
