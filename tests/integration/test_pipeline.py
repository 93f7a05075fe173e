"""The historical pipeline end to end: OLTP -> Debezium -> Kafka -> consumer -> DWH, exactly once."""

import subprocess
import threading
import time

import psycopg2
import pytest

from instashop import generator
from instashop.connector import ConnectClient, load_config
from instashop.stack.kafka import KafkaConnect
from tests.integration.pipeline import spec_answers_equal_truth, wait_until_caught_up

pytestmark = pytest.mark.integration


def _generate(settings, sessions: int, rate: float, seed: int) -> generator.Summary:
    options = generator.GeneratorConfig(rate=rate, sessions=sessions, seed=seed, customers=300, products=80)
    return generator.run(settings["OLTP_DSN"], options, console=None)


def _assert_dwh_equals_truth(settings) -> None:
    wait_until_caught_up(settings)
    for name, (dwh, truth) in spec_answers_equal_truth(settings).items():
        assert dwh == truth, f"spec query '{name}' differs from the OLTP truth"


def test_spec_queries_equal_the_oltp_truth(settings, cdc_pipeline):
    _generate(settings, sessions=400, rate=0, seed=11)
    _assert_dwh_equals_truth(settings)


def test_registering_again_leaves_a_current_connector_alone(settings, cdc_pipeline):
    connect = ConnectClient(settings)
    assert connect.register() == "unchanged"
    try:
        assert connect.register(config={**load_config(), "heartbeat.interval.ms": "9000"}) == "updated"
    finally:
        assert connect.register() == "updated"  # back to the file's configuration
    deadline = time.monotonic() + 60
    while not connect.state().healthy:
        assert time.monotonic() < deadline, f"connector not running after the update: {connect.state()}"
        time.sleep(1)


def test_consumer_killed_mid_stream_loses_and_duplicates_nothing(settings, cdc_pipeline):
    writer = threading.Thread(target=_generate, args=(settings, 600, 600, 12))
    writer.start()
    time.sleep(3)
    cdc_pipeline.kill()  # SIGKILL: no chance to finish its batch or commit offsets
    assert cdc_pipeline.pid() is None
    time.sleep(2)
    cdc_pipeline.start()
    writer.join()
    _assert_dwh_equals_truth(settings)


def test_connect_worker_restart_replays_without_duplicates(settings, cdc_pipeline):
    connect = KafkaConnect(settings)
    writer = threading.Thread(target=_generate, args=(settings, 600, 600, 13))
    writer.start()
    time.sleep(3)
    connect.process.kill()  # Debezium resumes from its last flushed offset: changes are sent twice
    subprocess.run([str(settings.main_venv / "bin" / "instashop"), "stack", "up", "connect"], check=True)
    writer.join()
    _assert_dwh_equals_truth(settings)


def test_consumer_rides_out_a_lost_dwh_connection(settings, cdc_pipeline):
    writer = threading.Thread(target=_generate, args=(settings, 600, 600, 14))
    writer.start()
    time.sleep(3)
    pid = cdc_pipeline.pid()
    with psycopg2.connect(settings.admin_dsn("dwh")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'instashop-consumer'"
        )
        assert cur.fetchone()[0] >= 1
    conn.close()
    writer.join()
    _assert_dwh_equals_truth(settings)
    assert cdc_pipeline.pid() == pid, "the consumer reconnected instead of dying"
