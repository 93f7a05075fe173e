"""The `instashop` command: operate the local stack and the pipelines."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import psycopg2
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from instashop import config, connector, kafka_auth, migrations, partitions, topics
from instashop.stack import manager

console = Console()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--job-marker", hidden=True, help="Tags a detached job's command line (see instashop.jobs).")
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


# --- .env --------------------------------------------------------------------------------------


@main.command("init-env")
def init_env() -> None:
    """Write .env with random secrets, or add the keys an existing one lacks (values never change)."""
    existed = config.ENV_FILE.exists()
    added = config.write_env_file()
    if not existed:
        click.echo(f"wrote {config.ENV_FILE} with fresh random secrets")
    elif added:
        click.echo(f"{config.ENV_FILE}: added {', '.join(added)}")
    else:
        click.echo(f"{config.ENV_FILE} is complete; left unchanged")


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


# --- consumer ------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most messages written per DWH transaction.",
)
@click.option(
    "--batch-timeout",
    default=0.1,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds to wait for a batch to fill.",
)
@click.option("--group-id", default="instashop-dwh", show_default=True, help="Kafka consumer group.")
@click.option(
    "--instance-id",
    default=None,
    help="Static member id in the group (default: <hostname>-1); one per consumer running at the same time.",
)
def consume(batch_size: int, batch_timeout: float, group_id: str, instance_id: str | None) -> None:
    """Apply the CDC topics to the DWH until SIGTERM/Ctrl-C (the batch in flight is finished)."""
    from instashop import consumer

    static_id = {"instance_id": instance_id} if instance_id else {}
    options = consumer.ConsumerOptions(
        batch_size=batch_size, batch_timeout=batch_timeout, group_id=group_id, **static_id
    )
    consumer.run(config.load_settings(), options)


# --- pipeline jobs ------------------------------------------------------------------------------


@main.group("jobs")
def jobs_group() -> None:
    """The pipeline's long-running jobs (consumer, Spark app, demo generator) as detached processes."""


def _selected_jobs(names: tuple[str, ...]):
    from instashop import jobs

    available = {job.name: job for job in jobs.demo_jobs(config.load_settings())}
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
    """The live-metrics Spark app (spark_apps/realtime_metrics.py) writing Redis `live:*` keys."""


@spark_group.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("app_args", nargs=-1, type=click.UNPROCESSED)
def spark_start(app_args: tuple[str, ...]) -> None:
    """Start the app unless running; APP_ARGS go to it (e.g. --trigger real-time; see the app's --help)."""
    from instashop import jobs

    job = jobs.spark_job(config.load_settings(), *app_args)
    running = job.pid()
    note = " (already running; arguments ignored)" if running and app_args else ""
    console.print(f"spark running (pid {running or job.start()}){note}, log {job.process.log_file}", highlight=False)


@spark_group.command("stop")
def spark_stop() -> None:
    """SIGTERM: the query stops between two batches and the app exits (SIGKILL after 60 s)."""
    from instashop import jobs

    console.print("spark stopped" if jobs.spark_job(config.load_settings()).stop() else "spark was not running")


@spark_group.command("status")
def spark_status() -> None:
    """The app's pid and its heartbeat in Redis; exits 1 unless it runs and beat in the last 30 s."""
    import redis

    from instashop import jobs, live_metrics

    settings = config.load_settings()
    pid = jobs.spark_job(settings).pid()
    try:
        beat = (
            live_metrics.read_heartbeat(redis.Redis.from_url(settings["REDIS_LIVE_READER_URL"], socket_timeout=5)) or {}
        )
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
    return connector.ConnectClient(config.load_settings())


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
    stack/connect/instashop-oltp.json (idempotent). Refused until `instashop db migrate` has
    created the connector's publication."""
    _ensure_topics()
    with _connect_errors():
        outcome = _connect().register()
    click.echo(f"{connector.CONNECTOR_NAME}: {outcome}")


# --- Kafka topics -------------------------------------------------------------------------------


@main.group("topics")
def topics_group() -> None:
    """The pipeline's Kafka topics (instashop.topics)."""


@topics_group.command("ensure")
def topics_ensure() -> None:
    """Create every topic the pipeline uses that does not exist yet, with its settings (idempotent)."""
    _ensure_topics()


def _ensure_topics() -> None:
    from confluent_kafka import KafkaException

    try:
        settings = config.load_settings()
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
    conn = psycopg2.connect(config.load_settings()["DWH_MAINTAINER_DSN"])
    try:
        yield conn
    finally:
        conn.close()


# --- workload generator -------------------------------------------------------------------------


@main.command()
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
    from instashop import generator

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
        summary = generator.run(config.load_settings()["OLTP_DSN"], options, console=console)
    except (generator.GeneratorError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    console.print(generator.summary_table(summary))


# --- fault injection --------------------------------------------------------------------------------


@main.command()
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
    from instashop import chaos as soak

    settings = config.load_settings()
    options = soak.ChaosConfig(duration=duration, rate=rate, seed=seed)
    try:
        report = soak.run(settings, options, json_path or settings.var_dir / "bench" / "chaos.json", console)
    except soak.ChaosError as err:
        raise click.ClickException(str(err)) from None
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
