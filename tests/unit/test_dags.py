"""DAG integrity: every file in dags/ imports cleanly, and every DAG carries what operators rely on."""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
CONTRACT_IDS = {
    "stream_supervisor",
    "dwh_partition_maintenance",
    "dwh_retention",
    "session_outcomes_backfill",
    "dwh_reconciliation",
    "dwh_rollups",
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    """DagBag over dags/ with a throw-away AIRFLOW_HOME: no metadata DB, no stack, no ~/airflow."""
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW_HOME", str(home))
        env.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER))
        env.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        env.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(DAGS_FOLDER), safe_mode=False)


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    files = {Path(f).name for f in os.listdir(DAGS_FOLDER) if f.endswith(".py")}
    loaded = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert files == loaded, f"files without a DAG: {files - loaded}"


def test_dag_ids_match_the_contract(dagbag):
    assert set(dagbag.dag_ids) == CONTRACT_IDS


@pytest.mark.parametrize("dag_id", sorted(CONTRACT_IDS))
def test_dag_has_owner_tags_retries_and_docs(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, "tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 80, "doc_md"
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.owner not in (None, "", "airflow"), f"{task.task_id}: owner"
        assert task.retries is not None, f"{task.task_id}: retries"
    assert any(task.retries > 0 for task in dag.tasks), "some task retries"


def test_stream_supervisor_runs_every_minute_one_run_at_a_time(dagbag):
    dag = dagbag.dags["stream_supervisor"]
    assert dag.max_active_runs == 1
    assert dag.schedule == "* * * * *"
    assert {"supervise_consumer", "supervise_connector", "supervise_replication_slot"} <= set(dag.task_ids)
    # A run must end well within the schedule's interval plus its restart time.
    assert all(task.execution_timeout <= timedelta(minutes=5) for task in dag.tasks)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("start_date", "2026-13-01", "is not a 'date'"),
        ("start_date", "2026-02-30", "is not a 'date'"),
        ("end_date", "31/01/2026", "is not a 'date'"),
        ("end_date", 20260131, "is not of type"),
        ("dry_run", "yes", "is not of type 'boolean'"),
    ],
)
def test_backfill_params_reject_malformed_input_naming_the_problem(dagbag, name, value, problem):
    """What the trigger form and POST /dagRuns check before a run exists (HTTP 400 with this text)."""
    from airflow.sdk.definitions.param import ParamValidationError

    param = copy.deepcopy(dagbag.dags["session_outcomes_backfill"].params.get_param(name))
    with pytest.raises(ParamValidationError, match=problem):
        param.resolve(value)


def test_backfill_params_accept_a_range_a_single_day_and_the_default(dagbag):
    params = copy.deepcopy(dagbag.dags["session_outcomes_backfill"].params)
    assert params.validate() == {"start_date": None, "end_date": None, "dry_run": False}
    params.update({"start_date": "2026-01-01", "end_date": "2026-01-31", "dry_run": True})
    assert params.validate()["end_date"] == "2026-01-31"


def test_retention_and_maintenance_params_have_bounds(dagbag):
    retention = dagbag.dags["dwh_retention"].params.get_param("retention_days")
    assert retention.value is None and retention.schema["minimum"] == 1
    ahead = dagbag.dags["dwh_partition_maintenance"].params.get_param("days_ahead")
    assert ahead.value == 7


def test_rollups_refresh_every_quarter_hour_and_take_an_optional_range(dagbag):
    dag = dagbag.dags["dwh_rollups"]
    assert dag.schedule == "*/15 * * * *" and dag.max_active_runs == 1
    assert list(dag.task_ids) == ["plan_days", "refresh_rollups"]
    params = copy.deepcopy(dag.params)
    assert params.validate() == {"start_date": None, "end_date": None}
    params.update({"start_date": "2026-01-01", "end_date": "2026-01-31"})
    assert params.validate()["start_date"] == "2026-01-01"
