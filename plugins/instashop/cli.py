"""The `instashop` command: operate the pipeline (schemas, topics, connector, consumer, jobs, partitions).

The developer tooling adds its own commands (the local stack, demo traffic, the soak) through the
`instashop.commands` entry point group; see `run`.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points

import click
import psycopg2
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from instashop import kafka_auth
from instashop.capture import connector, topics
from instashop.ingest.consumer import ConsumerOptions
from instashop.settings import load_settings
from instashop.warehouse import migrations, partitions

console = Console()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--job-marker", hidden=True, help="Tags a detached job's command line (see instashop.ops.jobs).")
def main(verbose: bool, job_marker: str | None) -> None:
    """InstaShop DWH command line."""
    # What the stack and the jobs write (data, logs, Kafka segments, the AOF, configs with secrets)
    # is private to the user running them; services started from here inherit the mask.
    os.umask(0o077)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


# --- database schemas ---------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schemas of the OLTP source and the DWH."""


@db.command()
def migrate() -> None:
    """Apply pending sql/oltp and sql/dwh migrations, in order (idempotent)."""
    try:
        applied = migrations.migrate(load_settings())
    except migrations.MigrationError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
    click.echo(f"applied {len(applied)} migration(s)" if applied else "schemas are up to date")


@db.command("bootstrap-source")
@click.option(
    "--owner-dsn",
    required=True,
    help="The captured tables' owner on the shop database (not a superuser); leave the password to ~/.pgpass.",
)
@click.option("--admin-dsn", help="A role that may create REPLICATION roles; only needed to create or fix the role.")
@click.option(
    "--replication-role",
    default=lambda: connector.load_config()["database.user"],
    show_default="debezium, the connector's database.user",
    help="The role Debezium logs in as; created with DEBEZIUM_PASSWORD of .env.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and its SQL; change nothing.")
def bootstrap_source(owner_dsn: str, admin_dsn: str | None, replication_role: str, dry_run: bool) -> None:
    """Prepare an existing shop database for capture with least privilege (see docs/source-database.md).

    Exits 2 when a step is left to the DBA (the statement is printed), 1 when the database cannot be
    prepared as it is."""
    from instashop.capture import source_bootstrap as bootstrap
    from instashop.capture import source_catalog

    conns: list = []
    try:
        owner = bootstrap.connect(owner_dsn, "--owner-dsn")
        conns.append(owner)
        admin = bootstrap.connect(admin_dsn, "--admin-dsn") if admin_dsn else None
        conns.append(admin)
        target = source_catalog.target_from_connector(owner.info.dbname, replication_role)
        outcomes = bootstrap.execute(bootstrap.Connections(owner, _debezium_password, admin), target, dry_run)
        _print_bootstrap(outcomes, owner, dry_run)
    except (source_catalog.BootstrapError, psycopg2.Error) as err:
        console.print(f"[bold red]error:[/] {escape(str(err).strip())}", highlight=False, soft_wrap=True)
        sys.exit(1)
    finally:
        for conn in conns:
            if conn is not None:
                conn.close()
    if not dry_run and bootstrap.needs_dba(outcomes):
        console.print(
            "[bold yellow]needs the DBA:[/] run the statement(s) above as an admin, then run this command again "
            "for the steps that wait for it",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


def _debezium_password() -> str:
    from instashop.capture.source_catalog import BootstrapError

    try:
        return load_settings().debezium_password
    except (OSError, ValueError) as err:  # no .env, or bad settings (the message names keys, not values)
        raise BootstrapError(f"the replication role's password (DEBEZIUM_PASSWORD) is unavailable: {err}") from None


_STATUS_STYLE = {
    "done": "green",
    "already in place": "dim green",
    "would run": "cyan",
    "needs the DBA": "bold yellow",
    "waits for the DBA": "yellow",
}


def _print_bootstrap(outcomes, conn, dry_run: bool) -> None:
    """Each step with its status; the SQL of what ran, would run or is left to the DBA."""
    from instashop.capture import source_bootstrap as bootstrap

    for outcome in outcomes:
        step, status = outcome.step, outcome.status
        style = _STATUS_STYLE[status.value]
        console.print(
            f"[{style}]{status.value:<18}[/] {escape(step.what)} [dim]({step.runner})[/]",
            highlight=False,
            soft_wrap=True,
        )
        if step.statement is not None and (dry_run or status is not bootstrap.Status.IN_PLACE):
            console.print(f"    {escape(bootstrap.render(step.statement, conn))};", highlight=False, soft_wrap=True)
    for_dba = [o.step for o in outcomes if o.status is bootstrap.Status.NEEDS_DBA]
    if for_dba:
        console.print(
            "The DBA must run, as a superuser (on a managed service its admin role: see docs/source-database.md):",
            highlight=False,
            soft_wrap=True,
        )
        for step in for_dba:
            assert step.statement is not None  # checks are never left to the DBA: they refuse
            console.print(f"    {escape(bootstrap.render(step.statement, conn))};", highlight=False, soft_wrap=True)
    if dry_run:
        console.print("dry run: nothing changed")
    elif all(o.status is bootstrap.Status.IN_PLACE for o in outcomes):
        console.print("everything is already in place: nothing changed")


# --- consumer ------------------------------------------------------------------------------------


# The defaults are ConsumerOptions' own, so the command and a consumer built in code agree.
@main.command()
@click.option(
    "--batch-size",
    default=ConsumerOptions.batch_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most messages written per DWH transaction.",
)
@click.option(
    "--batch-timeout",
    default=ConsumerOptions.batch_timeout,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds to wait for a batch to fill.",
)
@click.option("--group-id", default=ConsumerOptions.group_id, show_default=True, help="Kafka consumer group.")
@click.option(
    "--instance-id",
    default=None,
    help="Static member id in the group (default: <hostname>-1); one per consumer running at the same time.",
)
def consume(batch_size: int, batch_timeout: float, group_id: str, instance_id: str | None) -> None:
    """Apply the CDC topics to the DWH until SIGTERM/Ctrl-C (the batch in flight is finished)."""
    from instashop.ingest import consumer

    options = ConsumerOptions(batch_size=batch_size, batch_timeout=batch_timeout, group_id=group_id)
    if instance_id:
        options = replace(options, instance_id=instance_id)
    consumer.run(load_settings(), options)


# --- pipeline jobs ------------------------------------------------------------------------------


@main.group("jobs")
def jobs_group() -> None:
    """The pipeline's long-running jobs (consumer, Spark app, demo generator) as detached processes."""


def _selected_jobs(names: tuple[str, ...]):
    from instashop.ops import jobs

    available = {job.name: job for job in jobs.demo_jobs(load_settings())}
    unknown = set(names) - set(available)
    if unknown:
        raise click.BadParameter(f"unknown job(s) {', '.join(sorted(unknown))}; known: {', '.join(available)}")
    return [job for name, job in available.items() if not names or name in names]


@jobs_group.command("start")
@click.argument("names", nargs=-1)
def jobs_start(names: tuple[str, ...]) -> None:
    """Start NAMES (default: all) unless running."""
    for job in _selected_jobs(names):
        console.print(f"{job.name:<12} running (pid {job.start()}), log {job.process.log_file}", highlight=False)


@jobs_group.command("stop")
@click.argument("names", nargs=-1)
def jobs_stop(names: tuple[str, ...]) -> None:
    """Stop NAMES (default: all) with SIGTERM: each finishes its batch first."""
    for job in reversed(_selected_jobs(names)):
        if job.stop():
            console.print(f"{job.name:<12} stopped")


@jobs_group.command("status")
def jobs_status() -> None:
    """Which jobs run, with their pids and logs."""
    table = Table("job", "pid", "log")
    for job in _selected_jobs(()):
        table.add_row(job.name, str(job.pid() or "-"), str(job.process.log_file))
    console.print(table)


# --- live metrics (Spark) -----------------------------------------------------------------------


@main.group("spark")
def spark_group() -> None:
    """The live-metrics Spark app (plugins/instashop/live/spark/app.py) writing Redis `live:*` keys."""


@spark_group.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("app_args", nargs=-1, type=click.UNPROCESSED)
def spark_start(app_args: tuple[str, ...]) -> None:
    """Start the app unless running; APP_ARGS go to it (e.g. --trigger real-time; see the app's --help)."""
    from instashop.ops import jobs

    job = jobs.spark_job(load_settings(), *app_args)
    running = job.pid()
    note = " (already running; arguments ignored)" if running and app_args else ""
    console.print(f"spark running (pid {running or job.start()}){note}, log {job.process.log_file}", highlight=False)


@spark_group.command("stop")
def spark_stop() -> None:
    """SIGTERM: the query stops between two batches and the app exits (SIGKILL after 60 s)."""
    from instashop.ops import jobs

    console.print("spark stopped" if jobs.spark_job(load_settings()).stop() else "spark was not running")


@spark_group.command("status")
def spark_status() -> None:
    """The app's pid and its heartbeat in Redis; exits 1 unless it runs and beat in the last 30 s."""
    import redis

    from instashop.live import metrics as live_metrics
    from instashop.ops import jobs

    settings = load_settings()
    pid = jobs.spark_job(settings).pid()
    try:
        beat = live_metrics.read_heartbeat(redis.Redis.from_url(settings.redis_live_reader_url, socket_timeout=5)) or {}
    except redis.RedisError as err:
        beat = {"error": f"Redis unreachable: {err}"}
    table = Table("spark", "", show_header=False)
    table.add_row("job pid", str(pid or "-"))
    for field in (*live_metrics.HEARTBEAT_FIELDS, "age_seconds"):
        table.add_row(field, str(beat.get(field) or "-"))
    console.print(table)
    fresh = beat.get("status") == "running" and (beat.get("age_seconds") or 1e9) < 30
    sys.exit(0 if pid and fresh else 1)


# --- Debezium connector -------------------------------------------------------------------------


@main.group("connector")
def connector_group() -> None:
    """The Debezium connector capturing the shop's database (Kafka Connect REST)."""


def _connect() -> connector.ConnectClient:
    return connector.ConnectClient(load_settings())


@contextmanager
def _connect_errors():
    """Connect REST failures as one-line CLI errors."""
    try:
        yield
    except connector.ConnectError as err:
        raise click.ClickException(str(err)) from None


@connector_group.command("status")
def connector_status() -> None:
    """Connector and task states; exits 1 unless all are RUNNING."""
    with _connect_errors():
        state = _connect().state()
    click.echo(f"{connector.CONNECTOR_NAME}: {state.connector}; tasks: {', '.join(state.tasks) or 'none'}")
    if state.trace:
        click.echo(state.trace.splitlines()[0])
    sys.exit(0 if state.healthy else 1)


@connector_group.command("register")
def connector_register() -> None:
    """Create the pipeline's topics, then create or update the connector from
    plugins/instashop/capture/instashop-oltp.json (idempotent). Refused until `instashop db migrate` has
    created the connector's publication."""
    _ensure_topics()
    with _connect_errors():
        outcome = _connect().register()
    click.echo(f"{connector.CONNECTOR_NAME}: {outcome}")


# --- Kafka topics -------------------------------------------------------------------------------


@main.group("topics")
def topics_group() -> None:
    """The pipeline's Kafka topics (instashop.capture.topics)."""


@topics_group.command("ensure")
def topics_ensure() -> None:
    """Create every topic the pipeline uses that does not exist yet, with its settings (idempotent)."""
    _ensure_topics()


def _ensure_topics() -> None:
    from confluent_kafka import KafkaException

    try:
        settings = load_settings()
        created = topics.ensure(kafka_auth.client_config(settings, kafka_auth.ADMIN), topics.pipeline_topics())
    except KafkaException as err:
        raise click.ClickException(f"Kafka topics not created: {err.args[0]}") from None
    click.echo(f"created topics: {', '.join(created)}" if created else "topics are up to date")


@connector_group.command("restart")
def connector_restart() -> None:
    """Restart the connector and its tasks."""
    with _connect_errors():
        _connect().restart()
    click.echo(f"{connector.CONNECTOR_NAME}: restart requested")


# --- partitions ---------------------------------------------------------------------------------


@main.group("partitions")
def partitions_group() -> None:
    """Daily partitions of realtime_events."""


@partitions_group.command()
@click.option("--days-back", default=3, show_default=True, type=click.IntRange(min=0))
@click.option("--days-ahead", default=7, show_default=True, type=click.IntRange(min=0))
def ensure(days_back: int, days_ahead: int) -> None:
    """Create missing daily partitions around today and rescue rows stuck in the default one."""
    today = datetime.now(UTC).date()
    with _dwh_admin() as conn:
        created = partitions.ensure_daily_partitions(
            conn, today - timedelta(days=days_back), today + timedelta(days=days_ahead)
        )
        created += partitions.rescue_default_partition(conn)
    click.echo(f"created {len(created)} partition(s)" if created else "partitions are up to date")


@partitions_group.command("list")
def list_partitions() -> None:
    """The partition inventory with exact row counts."""
    with _dwh_admin() as conn:
        rows = partitions.inventory(conn)
    table = Table("partition", "day", "rows")
    for part in rows:
        table.add_row(part.name, str(part.day or "default"), f"{part.rows:,}")
    console.print(table)


@contextmanager
def _dwh_admin():
    # The maintainer owns realtime_events: only the owner may create, attach and drop partitions.
    conn = psycopg2.connect(load_settings().dwh_maintainer_dsn)
    try:
        yield conn
    finally:
        conn.close()


def command_line() -> click.Group:
    """This group plus the commands that installed packages contribute (`instashop.commands`)."""
    for entry_point in entry_points(group="instashop.commands"):
        for command in entry_point.load():
            main.add_command(command)
    return main


def run() -> None:
    """The console script."""
    command_line()()


if __name__ == "__main__":
    run()
