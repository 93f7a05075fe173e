"""Workload generator: realistic shop sessions written into the OLTP database.

What a visitor does, and what later happens to a payment, is decided by pure functions of a
`random.Random` and the catalog (`plan_session`, `Lifecycle`), so the decisions are unit-testable and a
seed reproduces them. `ShopWriter` turns the decisions into SQL; `run` paces the loop.

Each session is committed as one database transaction, the way the shop app would record a visit, so
Debezium downstream sees realistic multi-row transactions. Later changes (payment settled, refund,
price change, clean-up deletes) each get their own small transaction.

Reproducibility: the same seed on the same starting state writes the same customers, products,
outcomes, quantities, prices, statuses and deletes. Timestamps, serial ids and session ids differ:
a session id is `sess_<run id><counter>` with a random per-run id, because it is a primary key and a
second run with the same seed must not collide with the first.
"""

from instashop.devstack.generator.runner import GeneratorConfig, run
from instashop.devstack.generator.summary import Summary, summary_table
from instashop.devstack.generator.writer import GeneratorError

# What the CLI, the benchmarks and the tests drive a run with; the parts live in the submodules.
__all__ = ["GeneratorConfig", "GeneratorError", "Summary", "run", "summary_table"]
