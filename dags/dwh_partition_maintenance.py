"""
### DWH partition maintenance

Daily, for `realtime_events` (partitioned by day on `"timestamp"`, UTC):

1. **create_ahead** — hands any partition a superuser created to `dwh_maintainer`, then creates
   the daily partitions from today to `days_ahead` days ahead (Param, default 7) that are missing;
2. **rescue_default** — rows that landed in the default partition (a day that had no partition
   yet) get their day's partition: moved out and attached in one transaction;
3. **report_inventory** — every partition with its exact row count, in the log and as XCom.

Runs as the DWH role `dwh_maintainer` (owner of the partitions), through the Airflow connection
`instashop_dwh_maintainer`. Idempotent. Logic: `plugins/instashop/warehouse/partitions.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, task

from instashop.ops import airflow_connections as conns
from instashop.ops.dag_defaults import instashop_dag
from instashop.ops.dag_params import run_params
from instashop.warehouse import partitions


@instashop_dag(
    "dwh_partition_maintenance",
    schedule="15 0 * * *",
    doc_md=__doc__,
    tags=["dwh", "partitions"],
    params={
        "days_ahead": Param(
            7,
            type="integer",
            minimum=0,
            maximum=366,
            title="Days ahead",
            description="Create the daily partitions from today (UTC) to this many days ahead.",
        ),
    },
    retries=2,
    retry_delay=timedelta(minutes=5),
)
def dwh_partition_maintenance():
    @task
    def create_ahead(params: dict | None = None) -> list[str]:
        params = run_params(params)
        today = pendulum.now("UTC").date()
        with conns.postgres(conns.DWH_MAINTAINER) as conn:
            adopted = partitions.adopt_partitions(conn)
            created = partitions.ensure_daily_partitions(conn, today, today + timedelta(days=params["days_ahead"]))
        print(f"adopted from a superuser: {adopted or 'none'}; created: {created or 'none'}")
        return created

    @task
    def rescue_default() -> list[str]:
        with conns.postgres(conns.DWH_MAINTAINER) as conn:
            rescued = partitions.rescue_default_partition(conn)
        print(f"partitions created for rows found in the default partition: {rescued or 'none'}")
        return rescued

    @task
    def report_inventory() -> list[dict]:
        with conns.postgres(conns.DWH_MAINTAINER) as conn:
            inventory = partitions.inventory(conn)
        for part in inventory:
            print(f"{part.name:<32} {part.day or 'default'!s:<10} {part.rows:>12,} rows")
        return [{"partition": p.name, "day": p.day and p.day.isoformat(), "rows": p.rows} for p in inventory]

    create_ahead() >> rescue_default() >> report_inventory()


dwh_partition_maintenance()
