"""The fault-injection soak of issue 7, short: under load, the consumer, the Spark app, the Connect worker
and the Kafka broker are SIGKILLed and PostgreSQL is restarted, one at a time; each comes back the
production way, and afterwards nothing is lost, doubled or misfiled. `make chaos` runs the long one.

It stops and restarts shared services (Kafka, PostgreSQL): never run it against a stack others use.
"""

import json

import pytest
from rich.console import Console

from instashop.devstack import chaos
from instashop.ops import jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def demo_pipeline(settings, cdc_pipeline):
    """What `make demo` runs on top of the stack: connector, consumer (cdc_pipeline) and the Spark app."""
    spark = jobs.spark_job(settings)
    was_running = spark.pid() is not None
    spark.start()
    yield
    if not was_running:
        spark.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_soak_recovers_from_every_fault_and_the_final_diff_is_zero(settings, demo_pipeline, tmp_path):
    # A short load: the faults then follow each other as soon as the previous one has recovered.
    config = chaos.ChaosConfig(duration=60, rate=50)
    report = chaos.run(settings, config, tmp_path / "chaos.json", Console(width=200))
    table = json.dumps([vars(f) for f in report.faults], indent=1)

    assert [f.component for f in report.faults] == list(chaos.FAULTS), table
    assert all(f.recovered for f in report.faults), table
    jobs_restarted_by = {f.component: f.restarted_by for f in report.faults if f.component in ("consumer", "spark")}
    assert all(by.startswith("stream_supervisor (") for by in jobs_restarted_by.values()), jobs_restarted_by
    # Killed services come back by themselves; after the databases' restart nothing else is started by hand.
    services_restarted_by = {f.component: f.restarted_by for f in report.faults if f.component in ("connect", "kafka")}
    assert all(by.startswith("supervisord") for by in services_restarted_by.values()), services_restarted_by
    assert report.generator.get("reconnects", 0) >= 1, "the load did not ride through the PostgreSQL restart"

    assert report.dwh["cells"] > 0 and report.dwh["diff"] == []
    assert report.live["windows"] > 0 and report.live["diff"] == []
    expected = {tuple(e) for e in report.dlq["expected"]}
    assert len(expected) == 3
    assert {tuple(e) for e in report.dlq["table"]} == expected
    assert {tuple(e) for e in report.dlq["topic"]} == expected
    assert report.passed, report.problems
    assert json.loads((tmp_path / "chaos.json").read_text())["passed"] is True
