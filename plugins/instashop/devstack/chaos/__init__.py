"""`instashop chaos`: the fault-injection soak (issue 7) of a running pipeline (`make demo`).

While the generator writes shop traffic at a steady rate, a schedule breaks one piece at a time:
SIGKILL of the consumer, of the Spark app (driver and JVM), of the Kafka Connect worker and of the
Kafka broker, then a restart of PostgreSQL (OLTP and DWH share the cluster); mid-soak it also puts
a few poison messages on a CDC topic. Each piece comes back the way it would in production: the
jobs through a `stream_supervisor` run triggered over Airflow's REST API (the minute schedule is
the fallback), the stack services through the stack's own `up` (what an operator runs after a crash:
it starts whatever is not running), the connector's tasks through the supervisor again.

Recovery time of a fault = from the kill until the piece is healthy again AND a change committed
after the kill has come out at the end of its data path (a shop session in the DWH; a Spark batch
over newer events in Redis).

At the end, with the generator stopped and everything drained: the DWH must equal the OLTP truth
per event type and day (counts and amount sums), Redis must equal the DWH in every figure of every
complete 1-minute window of the soak (its load deletes nothing, so none may be lower in the DWH), and
the DLQ (topic and table) must hold exactly the poison injected.
"""

from instashop.devstack.chaos.plan import FAULTS, ChaosConfig
from instashop.devstack.chaos.report import Report
from instashop.devstack.chaos.soak import ChaosError, run

# What `instashop chaos` and the integration test drive a soak with; the parts live in the submodules.
__all__ = ["FAULTS", "ChaosConfig", "ChaosError", "Report", "run"]
