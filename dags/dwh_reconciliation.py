"""
### DWH reconciliation

Hourly: for each event type and UTC day, the row count and the sum of `amount` in
`realtime_events` must equal the figures computed from the shop's OLTP tables, and the number of
`customer_sessions` the number of shop sessions. Compared from the start of the day `lookback_days`
ago up to `settle_minutes` before now, so changes still in flight are not differences.

A second task compares the live metrics the Spark app keeps in Redis with the DWH, per closed
1-minute window of the last `live_lookback_minutes`: cart adds/removes must be equal; orders,
revenue, page views, searches and ended sessions may only be lower in the DWH (the shop purges
some failed orders and bounced sessions after Redis counted them). It is skipped while the app
publishes no closed window (not running, or just started).

On any difference the task **fails** and its log lists every differing cell with both sides'
numbers. Reads only: `instashop_dwh_readonly`, `instashop_oltp_read` (read-only session),
`instashop_redis`. Logic: `plugins/instashop/warehouse/reconciliation.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, task
from airflow.sdk.exceptions import AirflowSkipException

from instashop.ops import airflow_connections as conns
from instashop.ops.dag_defaults import instashop_dag
from instashop.ops.dag_params import run_params
from instashop.warehouse import reconciliation


@instashop_dag(
    "dwh_reconciliation",
    schedule="5 * * * *",
    doc_md=__doc__,
    tags=["dwh", "quality"],
    params={
        "lookback_days": Param(
            1, type="integer", minimum=0, maximum=366, title="Look back (days)", description="0: today only."
        ),
        "settle_minutes": Param(
            5, type="integer", minimum=1, maximum=1440, title="Settle (minutes)", description="Ignore the newest."
        ),
        "live_lookback_minutes": Param(
            60, type="integer", minimum=1, maximum=2880, title="Live metrics: look back (minutes)"
        ),
    },
    # One retry absorbs a change caught mid-flight; a real difference fails both tries.
    retries=1,
    retry_delay=timedelta(minutes=2),
)
def dwh_reconciliation():
    @task
    def reconcile_dwh_with_oltp(params: dict | None = None) -> dict:
        params = run_params(params)
        window = reconciliation.window(
            pendulum.now("UTC"), params["lookback_days"], timedelta(minutes=params["settle_minutes"])
        )
        with conns.postgres(conns.OLTP_READ) as oltp, conns.postgres(conns.DWH_READONLY) as dwh:
            report = reconciliation.reconcile(oltp, dwh, window)
        print(f"DWH equals the OLTP truth over {report['cells']} (type, day) cells: {report['rows']}")
        return report

    @task
    def reconcile_live_metrics_with_dwh(params: dict | None = None) -> dict:
        params = run_params(params)
        with conns.postgres(conns.DWH_READONLY) as dwh:
            lookback = timedelta(minutes=params["live_lookback_minutes"])
            report = reconciliation.reconcile_live_metrics(conns.redis_client(), dwh, pendulum.now("UTC"), lookback)
        if "skipped" in report:
            raise AirflowSkipException(report["skipped"])
        print(f"Redis live metrics agree with the DWH over {report['windows']} closed 1-minute windows")
        return report

    reconcile_dwh_with_oltp()
    reconcile_live_metrics_with_dwh()


dwh_reconciliation()
