"""
### DWH retention

Daily: detaches and drops the daily partitions of `realtime_events` whose day is older than the
retention period; the partition of today (UTC) and later ones are never touched, nor the default
partition. Logs each partition dropped with its row count; the list is the task's XCom.

Retention in days, first found wins: the run's Param `retention_days` (trigger form), the Airflow
Variable `dwh_retention_days`, then 90. With retention N, days before (today - N) are dropped.
A retention under 7 days is refused (the run fails, naming the source) unless the run's Param
`force` is true: a typo must not wipe the warehouse.
Each partition is dropped in its own short transaction with a lock timeout, so a busy table makes
the task retry rather than stall the consumer. Logic: `plugins/instashop/warehouse/partitions.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, Variable, task
from airflow.sdk.exceptions import AirflowFailException

from instashop.ops import airflow_connections as conns
from instashop.ops.dag_defaults import instashop_dag
from instashop.ops.dag_params import run_params
from instashop.warehouse import partitions

RETENTION_VARIABLE = "dwh_retention_days"


@instashop_dag(
    "dwh_retention",
    schedule="45 0 * * *",
    doc_md=__doc__,
    tags=["dwh", "partitions", "retention"],
    params={
        "retention_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Retention (days)",
            description=(
                f"Keep this many days before today. Empty: Variable {RETENTION_VARIABLE}, else 90. "
                f"Under {partitions.MIN_RETENTION_DAYS} only with force."
            ),
        ),
        "force": Param(
            False,
            type="boolean",
            title="Force a short retention",
            description=f"Allow a retention under {partitions.MIN_RETENTION_DAYS} days (drops that much history).",
        ),
    },
    retries=2,
    retry_delay=timedelta(minutes=5),
)
def dwh_retention():
    @task
    def drop_old_partitions(params: dict | None = None) -> list[dict]:
        params = run_params(params)
        try:
            days = partitions.resolve_retention_days(
                params["retention_days"], Variable.get(RETENTION_VARIABLE, None), params["force"]
            )
        except ValueError as err:  # a bad setting: retrying would not mend it
            raise AirflowFailException(str(err)) from err
        today = pendulum.now("UTC").date()
        cutoff = partitions.retention_cutoff(today, days)
        print(f"retention {days} days: dropping partitions of days before {cutoff}")
        with conns.postgres(conns.DWH_MAINTAINER) as conn:
            partitions.adopt_partitions(conn)
            dropped = partitions.drop_partitions_older_than(conn, cutoff, today)
        for part in dropped:
            print(f"dropped {part.name} ({part.rows:,} rows)")
        print(f"dropped {len(dropped)} partition(s), {sum(p.rows for p in dropped):,} rows in all")
        return [{"partition": p.name, "day": p.day.isoformat() if p.day else None, "rows": p.rows} for p in dropped]

    drop_old_partitions()


dwh_retention()
