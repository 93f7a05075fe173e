"""The historical pipeline end to end: OLTP -> Debezium -> Kafka -> consumer -> DWH, exactly once."""

import json
import re
import subprocess
import time
from collections import Counter

import psycopg2
import pytest
from confluent_kafka import Consumer, TopicPartition

from instashop.capture.connector import CDC_TOPIC_PATTERN, ConnectClient, load_config
from instashop.devstack import generator
from instashop.devstack.kafka import KafkaConnect
from instashop.kafka_auth import ADMIN, client_config
from instashop.ops.process import wait_until
from tests.support.pipeline import (
    Background,
    run_sessions,
    spec_answers_equal_truth,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration

WRITER_TIMEOUT = 300  # 600 sessions at 600 row changes/s take ~20-40 s here


def _config(sessions: int, rate: float, seed: int) -> generator.GeneratorConfig:
    return generator.GeneratorConfig(rate=rate, sessions=sessions, seed=seed, customers=300, products=80)


def _generate(settings, sessions: int, rate: float, seed: int) -> generator.Summary:
    return generator.run(settings.oltp_dsn, _config(sessions, rate, seed), console=None)


def _start_writer(settings, seed: int) -> tuple[Background, str]:
    """A generator run in the background, and the prefix of its session ids."""
    config = _config(600, 600, seed)
    writer = Background(generator.run, settings.oltp_dsn, config, console=None)
    writer.start()
    return writer, config.session_prefix


def _wait_mid_stream(settings, writer: Background, prefix: str) -> None:
    """Until the DWH holds some of the run's sessions but not all the OLTP has, the writer still writing:
    a fault injected now hits changes in flight, and more follow it."""

    def in_flight() -> bool:
        oltp, dwh = run_sessions(settings, prefix)
        return 0 < dwh < oltp or not writer.is_alive()

    assert wait_until(in_flight, 60, 0.2), f"the run's sessions never reached the DWH: {run_sessions(settings, prefix)}"
    assert writer.is_alive(), "the generator finished before the fault: it would not hit mid-stream"


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


def test_consumer_killed_mid_stream_loses_and_duplicates_nothing(settings, cdc_pipeline, supervisor_paused):
    writer, prefix = _start_writer(settings, seed=12)
    _wait_mid_stream(settings, writer, prefix)
    assert cdc_pipeline.kill() is not None  # SIGKILL: no chance to finish its batch or commit offsets
    assert cdc_pipeline.pid() is None
    frozen = run_sessions(settings, prefix)[1]
    # The shop goes on while the consumer is down: the DWH falls behind, and must catch up from Kafka.
    assert wait_until(lambda: run_sessions(settings, prefix)[0] > frozen, 30, 0.2), "no change after the kill"
    assert run_sessions(settings, prefix)[1] == frozen, "the DWH changed with the consumer dead"
    cdc_pipeline.start()
    writer.finish(WRITER_TIMEOUT)
    _assert_dwh_equals_truth(settings)


def test_connect_worker_restart_replays_without_duplicates(settings, cdc_pipeline):
    connect = KafkaConnect(settings)
    writer, prefix = _start_writer(settings, seed=13)
    _wait_mid_stream(settings, writer, prefix)
    killed_at = time.time()
    connect.kill()  # Debezium resumes from its last flushed offset: changes are sent twice
    subprocess.run([str(settings.main_venv / "bin" / "instashop"), "stack", "up", "connect"], check=True)
    writer.finish(WRITER_TIMEOUT)
    _assert_dwh_equals_truth(settings)
    # The fault did what it is here for: some changes reached Kafka twice, and the DWH still holds each once.
    assert _changes_sent_twice(settings, since=killed_at - 30) > 0, "the Connect restart replayed nothing"


def test_consumer_rides_out_a_lost_dwh_connection(settings, cdc_pipeline):
    writer, prefix = _start_writer(settings, seed=14)
    _wait_mid_stream(settings, writer, prefix)
    pid = cdc_pipeline.pid()
    with psycopg2.connect(settings.dwh_admin("dwh")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'instashop-consumer'"
        )
        assert cur.fetchone()[0] >= 1
    conn.close()
    assert writer.is_alive(), "the generator finished before the fault: it would not hit mid-stream"
    writer.finish(WRITER_TIMEOUT)
    _assert_dwh_equals_truth(settings)
    assert cdc_pipeline.pid() == pid, "the consumer reconnected instead of dying"


def _changes_sent_twice(settings, since: float) -> int:
    """How many (topic, key, LSN, op) changes appear more than once on the CDC topics since `since`."""
    consumer = Consumer({**client_config(settings, ADMIN), "group.id": "test-replay", "enable.auto.commit": False})
    try:
        names = [t for t in consumer.list_topics(timeout=10).topics if re.match(CDC_TOPIC_PATTERN, t)]
        wanted = [TopicPartition(t, p, int(since * 1000)) for t in names for p in _partitions(consumer, t)]
        starts = [tp for tp in consumer.offsets_for_times(wanted, timeout=10) if tp.offset >= 0]
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in starts}
        remaining = {k for k, end in ends.items() if end > 0}
        consumer.assign(starts)
        seen: Counter = Counter()
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error():
                    continue
                where = (message.topic(), message.partition())
                if message.offset() + 1 >= ends[where]:
                    remaining.discard(where)
                if change := _change_id(message.value()):
                    seen[(message.topic(), message.key(), *change)] += 1
        assert not remaining, f"could not read the CDC topics to their end: {remaining}"
    finally:
        consumer.close()
    return sum(1 for n in seen.values() if n > 1)


def _change_id(value: bytes | None) -> tuple | None:
    """(LSN, op) of a Debezium change; None for a tombstone or the poison other tests put on the topics."""
    try:
        change = json.loads(value or b"null")
        return (change["source"]["lsn"], change["op"])
    except (ValueError, TypeError, KeyError):
        return None


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    return sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
