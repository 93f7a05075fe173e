"""
### Stream supervisor

Every minute, checks each long-running piece of the pipeline and heals what is down or stuck:

| component | health read from | cure |
| --- | --- | --- |
| `consumer` | pid file, heartbeat (`pipeline_heartbeats`), consumer-group lag (Kafka admin) | start, or stop + start |
| `spark` | pid file, progress heartbeat in Redis | start, or stop + start |
| `connector` | Kafka Connect REST status of the Debezium connector | REST restart, or register |
| `replication_slot` | `pg_replication_slots` of the shop: exists, active, WAL kept | none: fails saying what to run |

Jobs are detached processes with pid files (`instashop.ops.jobs`); tasks only look and act, so no
stream ever lives inside an Airflow task. Starts happen under a per-job lock. Every check is a row
of the DWH table `pipeline_health_checks` (charted in Superset). A task fails when its component
stays down. Logic: `plugins/instashop/ops/supervisor.py`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import task

from instashop.ops import supervisor
from instashop.ops.dag_defaults import instashop_dag


@instashop_dag(
    supervisor.DAG_ID,
    schedule="* * * * *",
    dagrun_timeout=timedelta(minutes=5),
    doc_md=__doc__,
    tags=["streaming", "ops"],
    retries=1,
    retry_delay=timedelta(seconds=15),
    # A stuck job gets up to a minute to stop before it is killed, then a few seconds to start.
    task_defaults={"execution_timeout": timedelta(minutes=3)},
)
def stream_supervisor():
    # run_id comes from the task context: each health-check row names the run that wrote it.
    @task
    def supervise_job(name: str, run_id: str | None = None) -> dict:
        return supervisor.supervise_job(name, run_id)

    @task
    def supervise_connector(run_id: str | None = None) -> dict:
        return supervisor.supervise_connector(run_id)

    @task
    def supervise_replication_slot(run_id: str | None = None) -> dict:
        return supervisor.supervise_replication_slot(run_id)

    for name in supervisor.job_names():
        supervise_job.override(task_id=f"supervise_{name}")(name)
    supervise_connector()
    supervise_replication_slot()


stream_supervisor()
