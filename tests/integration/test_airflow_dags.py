"""The five DAGs against the real services: each run with dag.test(), one triggered through the REST API.

dag.test() runs in a subprocess (tests.support.airflow.run_dag) sharing the stack's metadata database,
so its runs show in the UI as manual runs triggered by "dag_test". Synthetic warehouse rows live on
days around 2000-01-01, far from the pipeline's own, and are removed again at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2
import pytest

from instashop.capture.connector import ConnectClient, load_config
from instashop.devstack import generator
from instashop.ops import jobs, supervisor
from instashop.ops.airflow_api import AirflowApiError, AirflowClient
from instashop.ops.process import wait_until
from instashop.warehouse import partitions
from tests.support.airflow import run_dag
from tests.support.live_app import wait_for_batches
from tests.support.pipeline import (
    Background,
    drop_day_partitions,
    execute,
    fetch,
    joined,
    run_sessions,
    settled_cart_event,
    spec_answers_equal_truth,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration


# --- dwh_partition_maintenance -----------------------------------------------------------------

STRANDED_DAY = date(2000, 1, 10)


@pytest.mark.timeout(300)
def test_partition_maintenance_creates_days_ahead_and_empties_the_default(settings, maintainer):
    drop_day_partitions(maintainer, [STRANDED_DAY])
    # A row for a day without a partition lands in the default partition, as a late event would.
    execute(
        settings.dwh_dsn,
        "INSERT INTO realtime_events (event_type, \"timestamp\", event_key, source_lsn) VALUES ('search', %s, %s, 1)",
        (datetime(2000, 1, 10, 12), "airflow-test:stranded"),
    )
    try:
        run = run_dag(settings, "dwh_partition_maintenance", {"days_ahead": 10})
        assert run.state == "success", run.output[-5000:]
        today = datetime.now(UTC).date()
        have = partitions.existing_days(maintainer)
        assert set(partitions.days_between(today, today + timedelta(days=10))) <= have
        # (Moved by this run, or by a scheduled one that ran meanwhile: either way the same DAG did it.)
        assert STRANDED_DAY in have
        inventory = {p["partition"]: p["rows"] for p in run.xcom["report_inventory"]}
        assert inventory[partitions.partition_name(STRANDED_DAY)] == 1
        assert fetch(settings.dwh_maintainer_dsn, "SELECT count(*) FROM realtime_events_default") == [(0,)]
    finally:
        drop_day_partitions(maintainer, [STRANDED_DAY])


# --- dwh_retention --------------------------------------------------------------------------------

OLD_DAYS = [date(2000, 1, 1), date(2000, 1, 2), date(2000, 1, 3)]


@pytest.mark.timeout(300)
def test_retention_drops_old_partitions_with_their_rows_and_keeps_recent_ones(settings, maintainer):
    drop_day_partitions(maintainer, OLD_DAYS)
    partitions.ensure_daily_partitions(maintainer, OLD_DAYS[0], OLD_DAYS[1])
    # One made by a superuser, as `instashop partitions ensure` does: the DAG adopts it first.
    with closing(psycopg2.connect(settings.dwh_admin("dwh"))) as admin:
        partitions.ensure_daily_partitions(admin, OLD_DAYS[2], OLD_DAYS[2])
    rows = [(datetime(2000, 1, 1, 8), "airflow-test:old-1"), (datetime(2000, 1, 1, 9), "airflow-test:old-2")]
    rows.append((datetime(2000, 1, 3, 10), "airflow-test:old-3"))
    for ts, key in rows:
        execute(
            settings.dwh_dsn,
            'INSERT INTO realtime_events (event_type, "timestamp", event_key, source_lsn) '
            "VALUES ('search', %s, %s, 1)",
            (ts, key),
        )
    today = datetime.now(UTC).date()
    cutoff = partitions.retention_cutoff(today, 90)
    before = partitions.existing_days(maintainer)
    try:
        run = run_dag(settings, "dwh_retention", {"retention_days": 90})
        assert run.state == "success", run.output[-5000:]
        dropped = {d["day"]: d["rows"] for d in run.xcom["drop_old_partitions"]}
        assert {day.isoformat(): dropped.get(day.isoformat()) for day in OLD_DAYS} == {
            "2000-01-01": 2,
            "2000-01-02": 0,
            "2000-01-03": 1,
        }
        assert all(date.fromisoformat(day) < cutoff for day in dropped)
        after = partitions.existing_days(maintainer)
        assert {day for day in before if day >= cutoff} <= after  # recent and future partitions kept
        assert today in after and not set(OLD_DAYS) & after
        assert "dropped realtime_events_p20000101 (2 rows)" in run.output
    finally:
        drop_day_partitions(maintainer, OLD_DAYS)


@pytest.mark.timeout(300)
def test_retention_under_the_minimum_is_refused_and_drops_nothing(settings, maintainer):
    before = partitions.existing_days(maintainer)
    run = run_dag(settings, "dwh_retention", {"retention_days": partitions.MIN_RETENTION_DAYS - 1})
    assert run.state == "failed"
    assert f"under the minimum of {partitions.MIN_RETENTION_DAYS}: trigger with force=true" in run.output
    assert partitions.existing_days(maintainer) >= before


# --- session_outcomes_backfill ----------------------------------------------------------------------

BACKFILL_DAY = date(2000, 2, 1)
OUTSIDE_DAY = date(2000, 2, 2)
# session -> (day, ended?, events as (event_type, amount, raw_data)), expected outcome
KNOWN_SESSIONS = {
    "airflow-test-conversion": (BACKFILL_DAY, True, [("user_behavior", None, {"page_type": "product"}),
                                                     ("cart_event", "20.00", {"action": "add"}),
                                                     ("transaction", "20.00", {"status": "paid"})]),
    "airflow-test-abandon": (BACKFILL_DAY, True, [("user_behavior", None, {"page_type": "product"}),
                                                  ("cart_event", "9.50", {"action": "add"})]),
    "airflow-test-bounce": (BACKFILL_DAY, True, [("user_behavior", None, {"page_type": "home"}),
                                                 ("search", None, {"query": "socks"})]),
    "airflow-test-open": (BACKFILL_DAY, False, [("user_behavior", None, {"page_type": "home"})]),
    "airflow-test-outside": (OUTSIDE_DAY, True, [("transaction", "5.00", {"status": "paid"})]),
}  # fmt: skip
EXPECTED_OUTCOMES = {
    "airflow-test-conversion": "conversion",
    "airflow-test-abandon": "cart_abandonment",
    "airflow-test-bounce": "bounce",
    "airflow-test-open": None,
    "airflow-test-outside": None,  # outside the range: left as it was
}
_KNOWN = "session_id LIKE 'airflow-test-%'"  # only ever used without query parameters


@pytest.fixture
def known_sessions(settings, maintainer) -> Iterator[None]:
    """Sessions with known events and no outcome yet, on days of their own; removed afterwards."""
    drop_day_partitions(maintainer, [BACKFILL_DAY, OUTSIDE_DAY])
    partitions.ensure_daily_partitions(maintainer, BACKFILL_DAY, OUTSIDE_DAY)
    with closing(psycopg2.connect(settings.dwh_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM customer_sessions WHERE {_KNOWN}")
        for session_id, (day, ended, events) in KNOWN_SESSIONS.items():
            start = datetime.combine(day, datetime.min.time()) + timedelta(hours=10)
            end = start + timedelta(minutes=len(events) + 1) if ended else None
            data = {"start_time": start.isoformat(), "end_time": end and end.isoformat(), "device": "web"}
            cur.execute(
                'INSERT INTO customer_sessions (session_id, customer_id, session_data, "timestamp", source_lsn) '
                "VALUES (%s, 1, %s, %s, 1)",
                (session_id, json.dumps(data), end or start),
            )
            for n, (event_type, amount, raw) in enumerate(events):
                cur.execute(
                    'INSERT INTO realtime_events (event_type, "timestamp", amount, session_id, raw_data, event_key, '
                    "source_lsn) VALUES (%s, %s, %s, %s, %s, %s, 1)",
                    (
                        event_type,
                        start + timedelta(minutes=n),
                        amount,
                        session_id,
                        json.dumps(raw),
                        f"{session_id}:{n}",
                    ),
                )
    try:
        yield
    finally:
        execute(settings.dwh_dsn, f"DELETE FROM customer_sessions WHERE {_KNOWN}")
        drop_day_partitions(maintainer, [BACKFILL_DAY, OUTSIDE_DAY])  # and the events with them


def _outcomes(settings) -> dict[str, str | None]:
    return dict(fetch(settings.dwh_readonly_dsn, f"SELECT session_id, outcome FROM customer_sessions WHERE {_KNOWN}"))


def _none_computed(settings) -> bool:
    rows = fetch(
        settings.dwh_readonly_dsn,
        f"SELECT outcome, session_data ? 'page_views' FROM customer_sessions WHERE {_KNOWN}",
    )
    return len(rows) == len(KNOWN_SESSIONS) and not any(outcome or computed for outcome, computed in rows)


@pytest.mark.timeout(400)
def test_backfill_computes_outcomes_for_known_sessions_idempotently(settings, known_sessions):
    day = {"start_date": BACKFILL_DAY.isoformat(), "end_date": BACKFILL_DAY.isoformat()}

    dry = run_dag(settings, "session_outcomes_backfill", {**day, "dry_run": True})
    assert dry.state == "success", dry.output[-5000:]
    assert (dry.xcom["recompute_outcomes"]["sessions"], dry.xcom["recompute_outcomes"]["changed"]) == (4, 4)
    assert _none_computed(settings), "a dry run wrote"

    run = run_dag(settings, "session_outcomes_backfill", {**day, "dry_run": False})
    assert run.state == "success", run.output[-5000:]
    assert _outcomes(settings) == EXPECTED_OUTCOMES
    data = dict(
        fetch(settings.dwh_readonly_dsn, f"SELECT session_id, session_data FROM customer_sessions WHERE {_KNOWN}")
    )
    assert data["airflow-test-conversion"].items() >= {"transactions": 1, "cart_adds": 1, "revenue": "20.00"}.items()
    assert data["airflow-test-bounce"]["searches"] == 1 and data["airflow-test-bounce"]["page_views"] == 1

    again = run_dag(settings, "session_outcomes_backfill", {**day, "dry_run": False})
    assert again.state == "success" and again.xcom["recompute_outcomes"]["changed"] == 0


@pytest.mark.timeout(300)
def test_backfill_with_end_before_start_fails_before_writing(settings, known_sessions):
    conf = {"start_date": OUTSIDE_DAY.isoformat(), "end_date": BACKFILL_DAY.isoformat(), "dry_run": False}
    run = run_dag(settings, "session_outcomes_backfill", conf)
    assert run.state == "failed"
    assert run.tasks == {"plan_range": "failed", "recompute_outcomes": "upstream_failed"}
    reason = "end_date 2000-02-01 is before start_date 2000-02-02"
    assert reason in run.output, "\n".join(
        line for line in run.output.splitlines() if "plan_range" in line or "Error" in line
    )
    assert _none_computed(settings)


# --- session_outcomes_backfill through the REST API of the running stack ---------------------------


@pytest.fixture(scope="module")
def airflow_api(settings) -> AirflowClient:
    api = AirflowClient(settings)
    deadline = time.monotonic() + 90  # the dag-processor rescans dags/ every 30 s
    while not api.has_dag("session_outcomes_backfill"):
        assert time.monotonic() < deadline, "session_outcomes_backfill is not parsed by the running Airflow"
        time.sleep(3)
    return api


@pytest.mark.timeout(400)
def test_backfill_triggered_through_the_rest_api(settings, known_sessions, airflow_api):
    dag_id = "session_outcomes_backfill"
    day = BACKFILL_DAY.isoformat()

    with pytest.raises(AirflowApiError) as malformed:
        airflow_api.trigger(dag_id, {"start_date": "2000-02-30", "end_date": day})
    assert malformed.value.status == 400 and "is not a 'date'" in malformed.value.body, malformed.value.body

    run_id = airflow_api.trigger(dag_id, {"start_date": OUTSIDE_DAY.isoformat(), "end_date": day})
    assert airflow_api.wait_for(dag_id, run_id) == "failed"
    assert airflow_api.task_states(dag_id, run_id) == {"plan_range": "failed", "recompute_outcomes": "upstream_failed"}
    assert "end_date 2000-02-01 is before start_date 2000-02-02" in airflow_api.task_log(dag_id, run_id, "plan_range")
    assert _none_computed(settings)

    good = airflow_api.trigger(dag_id, {"start_date": day, "end_date": day, "dry_run": False})
    assert airflow_api.wait_for(dag_id, good) == "success"
    assert _outcomes(settings) == EXPECTED_OUTCOMES


# --- dwh_reconciliation ---------------------------------------------------------------------------


@pytest.mark.timeout(400)
def test_reconciliation_passes_then_detects_a_tampered_row(settings, cdc_pipeline):
    conf = {"lookback_days": 1, "settle_minutes": 1}
    row = settled_cart_event(settings)
    clean = run_dag(settings, "dwh_reconciliation", conf)
    assert clean.state == "success", clean.output[-5000:]

    event_key, ts, amount = row
    tampered = amount + 1
    # The owner of realtime_events; a cart event is never updated at the source, so the consumer
    # cannot repair it behind our back.
    update = 'UPDATE realtime_events SET amount = %s WHERE event_key = %s AND "timestamp" = %s'
    assert execute(settings.dwh_maintainer_dsn, update, (tampered, event_key, ts)) == 1
    try:
        run = run_dag(settings, "dwh_reconciliation", conf)
    finally:
        execute(settings.dwh_maintainer_dsn, update, (amount, event_key, ts))
    assert run.state == "failed"
    assert "ReconciliationError" in run.output and f"cart_event {ts.date()}:" in run.output
    assert "difference +0 rows, +1.00 amount" in run.output


LIVE_DAY = date(2000, 3, 1)
LIVE_PREFIX = "live:airflow-test"


@pytest.fixture
def live_metrics_sample(settings, maintainer) -> Iterator[Any]:
    """Three closed minutes of live metrics in Redis (a private key prefix) and the same events in the DWH."""
    import redis

    from instashop.live import metrics as live_metrics

    client = redis.Redis.from_url(settings.redis_url)
    drop_day_partitions(maintainer, [LIVE_DAY])
    partitions.ensure_daily_partitions(maintainer, LIVE_DAY, LIVE_DAY)
    at = datetime(2000, 3, 1, 10, 0)
    events = [
        ("cart_event", at + timedelta(seconds=10), None, {"action": "add"}),
        ("cart_event", at + timedelta(seconds=20), None, {"action": "add"}),
        ("transaction", at + timedelta(minutes=1, seconds=5), "12.50", {"status": "paid"}),
        ("user_behavior", at + timedelta(minutes=2, seconds=30), None, {"page_type": "home"}),
    ]
    for n, (event_type, ts, amount, raw) in enumerate(events):
        _insert_event(settings, event_type, ts, amount, raw, f"airflow-test:live-{n}")
    start = int(at.replace(tzinfo=UTC).timestamp())
    aggregates = [
        live_metrics.Aggregate("1m", start, "event", "cart_add", 2),
        live_metrics.Aggregate("1m", start + 60, "transactions", "", 1, amount=Decimal("12.50"), customers=1),
        live_metrics.Aggregate("1m", start + 120, "event", "page_view", 1),
    ]
    pipe = client.pipeline()
    live_metrics.apply(pipe, live_metrics.commands(aggregates, prefix=LIVE_PREFIX))
    pipe.execute()
    heartbeat = {
        "status": "running",
        "watermark": "2000-03-01T10:03:00+00:00",
        "started_at": "2000-03-01T09:00:00+00:00",
    }
    live_metrics.write_heartbeat(client, heartbeat, prefix=LIVE_PREFIX)
    try:
        yield client
    finally:
        client.delete(*client.scan_iter(f"{LIVE_PREFIX}:*"))
        drop_day_partitions(maintainer, [LIVE_DAY])


def _insert_event(settings, event_type: str, ts: datetime, amount, raw: dict, key: str) -> None:
    execute(
        settings.dwh_dsn,
        'INSERT INTO realtime_events (event_type, "timestamp", amount, raw_data, event_key, source_lsn) '
        "VALUES (%s, %s, %s, %s, %s, 1)",
        (event_type, ts, amount, json.dumps(raw), key),
    )


@pytest.mark.timeout(120)
def test_live_metrics_in_redis_reconcile_with_the_dwh_and_a_difference_is_caught(settings, live_metrics_sample):
    from instashop.warehouse import reconciliation

    now, lookback = datetime(2000, 3, 1, 10, 20, tzinfo=UTC), timedelta(minutes=30)
    with closing(psycopg2.connect(settings.dwh_readonly_dsn)) as dwh:
        report = reconciliation.reconcile_live_metrics(live_metrics_sample, dwh, now, lookback, prefix=LIVE_PREFIX)
        assert (report["start"], report["end"], report["windows"]) == ("2000-03-01T09:50:00", "2000-03-01T10:03:00", 13)

        # An event the live metrics never counted.
        _insert_event(
            settings, "cart_event", datetime(2000, 3, 1, 10, 2, 40), None, {"action": "add"}, "airflow-test:x"
        )
        with pytest.raises(reconciliation.LiveMetricsMismatch) as err:
            reconciliation.reconcile_live_metrics(live_metrics_sample, dwh, now, lookback, prefix=LIVE_PREFIX)
    assert "cart_adds in the minute from 2000-03-01 10:02 UTC: Redis 0 must equal DWH 1" in str(err.value)


# --- stream_supervisor ----------------------------------------------------------------------------


def _actions_since(settings, component: str, since: datetime) -> list[tuple[str, str]]:
    return fetch(
        settings.dwh_readonly_dsn,
        f"SELECT status, action FROM pipeline_health_checks WHERE component = '{component}' "
        f"AND checked_at >= '{since.isoformat()}' ORDER BY checked_at",
    )


@pytest.mark.timeout(500)
def test_supervisor_restarts_a_killed_consumer_and_nothing_is_lost(settings, cdc_pipeline, supervisor_paused):
    options = generator.GeneratorConfig(rate=400, sessions=300, seed=41, customers=300, products=80)
    writer = Background(generator.run, settings.oltp_dsn, options, console=None)
    writer.start()

    def in_flight() -> bool:  # some of the run's sessions in the DWH, not all
        oltp, dwh = run_sessions(settings, options.session_prefix)
        return 0 < dwh < oltp or not writer.is_alive()

    assert wait_until(in_flight, 60, 0.2), "the run's sessions never reached the DWH"
    assert writer.is_alive(), "the generator finished before the kill: it would not hit mid-stream"
    killed_at = datetime.now(UTC)
    old_pid = jobs.consumer_job(settings).kill()  # SIGKILL: no batch finished, no offsets committed
    assert old_pid is not None
    assert cdc_pipeline.pid() is None
    frozen = run_sessions(settings, options.session_prefix)[1]

    run = run_dag(settings, "stream_supervisor")
    writer.finish(timeout=300)
    # (The run's state also reflects the Spark app, which is not what this test is about.)
    assert run.tasks["supervise_consumer"] == "success", run.output[-5000:]
    new_pid = cdc_pipeline.pid()
    assert new_pid is not None and new_pid != old_pid
    # The schedule is paused (supervisor_paused): our run started it, and it is on record.
    assert ("down", "started") in _actions_since(settings, "consumer", killed_at)
    assert run.xcom["supervise_connector"]["status"] == "healthy"
    # Debezium streams from its slot: it exists, a client is on it, little WAL is kept for it.
    slot = run.xcom["supervise_replication_slot"]
    assert slot["status"] == "healthy", slot
    assert slot["details"]["active"] is True and slot["details"]["slot"] == "instashop_debezium"

    oltp, _ = run_sessions(settings, options.session_prefix)
    assert oltp > frozen, "the shop wrote nothing while the consumer was down"
    wait_until_caught_up(settings, timeout=240)
    for name, (dwh, truth) in spec_answers_equal_truth(settings).items():
        assert dwh == truth, f"spec query '{name}' differs from the OLTP truth after the restart"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_supervisor_restarts_a_killed_spark_app_which_resumes(settings, cdc_pipeline, tmp_path):
    """A private instance of the Spark app (own name, checkpoint and key prefix) through the
    supervisor's check: started when down, SIGKILLed, started again, and beating from its checkpoint.
    The DAG's supervise_spark task runs the same check on the production instance."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    prefix, checkpoint = "live:airflow-test-spark", str(tmp_path / "checkpoint")
    # Real-time Mode (the default) reports a batch at each checkpoint: every 10 s here, not 5 min.
    args = ("--checkpoint", checkpoint, "--key-prefix", prefix, "--no-ui", "--interval", "10 seconds")
    job = jobs.spark_job(settings, *args, name="spark-airflow-test")
    spec = supervisor.Supervised(job, lambda: supervisor.redis_heartbeat(client, prefix), policy=supervisor.Policy())
    # A trickle of shop activity: records flow through the app the whole time.
    stop_load = threading.Event()
    load = generator.GeneratorConfig(rate=20, seed=53, customers=100, products=30)
    writer = threading.Thread(
        target=generator.run, args=(settings.oltp_dsn, load), kwargs={"console": None, "stop": stop_load}
    )
    writer.start()
    try:
        first = supervisor.check_job(spec)
        assert (first.status, first.action) == (supervisor.DOWN, supervisor.STARTED), first.details
        batch = wait_for_batches(client, prefix, job.pid())
        job.kill()  # driver and JVM at once, as a crash would
        assert job.pid() is None

        second = supervisor.check_job(spec)
        assert (second.status, second.action) == (supervisor.DOWN, supervisor.STARTED), second.details
        assert second.details["new_pid"] != first.details["new_pid"]
        assert wait_for_batches(client, prefix, job.pid(), after=batch) > batch  # resumed, not restarted at 0
    finally:
        stop_load.set()
        joined(writer, timeout=60)
        job.stop()
        job.process.pid_file.with_name(f"{job.name}.supervisor.lock").unlink(missing_ok=True)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


@pytest.mark.timeout(600)
def test_supervisor_restarts_a_failed_connector_task_and_nothing_is_lost(settings, cdc_pipeline):
    """A Debezium task FAILED for real (its replication connection terminated, with retries off so the
    error is fatal, as once production's retries are spent), brought back by the supervisor's connector
    check (what stream_supervisor's supervise_connector task runs), and the pipeline resumes."""
    connect = ConnectClient(settings)
    # Connect restarts the connector on a configuration change: wait until that restart has settled.
    assert connect.register(config={**load_config(), "errors.max.retries": "0"}) in ("updated", "unchanged")
    try:
        assert wait_until(lambda: connect.state().healthy and _walsenders(settings) == 1, 90, 1), connect.state()
        options = generator.GeneratorConfig(rate=200, sessions=200, seed=43, customers=300, products=80)
        writer = Background(generator.run, settings.oltp_dsn, options, console=None)
        writer.start()
        assert wait_until(lambda: run_sessions(settings, options.session_prefix)[1] > 0, 60, 0.5), "nothing flowed"
        assert _terminate_walsender(settings) == 1
        assert wait_until(lambda: "FAILED" in connect.state().tasks, 60, 0.5), connect.state()
        # Connect leaves a failed task failed while the shop goes on: only the supervisor brings it back.
        written = run_sessions(settings, options.session_prefix)[0]
        grew = wait_until(lambda: run_sessions(settings, options.session_prefix)[0] >= written + 20, 60, 0.5)
        assert grew, "the shop wrote nothing while the task was down"
        assert connect.state().tasks == ["FAILED"], connect.state()

        check = supervisor.check_connector(connect)
        assert (check.status, check.action) == (supervisor.DOWN, supervisor.RESTARTED), check
        assert "FAILED" in check.details["tasks"] and check.details.get("trace"), check.details
        assert wait_until(lambda: connect.state().healthy, 90, 1), f"not running after the restart: {connect.state()}"
        assert supervisor.check_connector(connect).status == supervisor.HEALTHY
        writer.finish(timeout=300)
    finally:
        connect.register()  # the file's configuration again (retries on)
        wait_until(lambda: connect.state().healthy, 90, 1)
    wait_until_caught_up(settings, timeout=240)
    for name, (dwh, truth) in spec_answers_equal_truth(settings).items():
        assert dwh == truth, f"spec query '{name}' differs from the OLTP truth after the connector's restart"


_DEBEZIUM_WALSENDERS = "FROM pg_stat_activity WHERE usename = 'debezium' AND backend_type = 'walsender'"


def _walsenders(settings) -> int:
    return fetch(settings.shop_admin("instashop"), f"SELECT count(*) {_DEBEZIUM_WALSENDERS}")[0][0]


def _terminate_walsender(settings) -> int:
    query = f"SELECT count(pg_terminate_backend(pid)) {_DEBEZIUM_WALSENDERS}"
    return fetch(settings.shop_admin("instashop"), query)[0][0]
