"""The chaos soak's plan and verdict: when each fault comes, what it injects, and what counts as a failure."""

from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

import pytest

from instashop.devstack.chaos.faults import Fault, Recovery
from instashop.devstack.chaos.plan import (
    FAULTS,
    POISON,
    ChaosConfig,
    live_differences,
    load_config,
    poison_messages,
    schedule,
)
from instashop.devstack.chaos.report import FaultResult, Report, verdict
from instashop.ingest.debezium import decode
from instashop.ingest.events import map_change
from instashop.warehouse.reconciliation import Window


def test_faults_come_one_at_a_time_spread_over_the_soak_with_the_poison_midway():
    plan = schedule(600, FAULTS)
    assert [step for _, step in plan] == ["consumer", "spark", "connect", POISON, "kafka", "postgres"]
    offsets = [at for at, _ in plan]
    assert offsets == sorted(offsets) and offsets[0] > 0 and offsets[-1] < 600
    gaps = {round(b - a) for a, b in pairwise(offsets)}
    assert gaps == {round(600 / 7)}


@pytest.mark.parametrize("name", ["invalid-json", "unknown-table", "wrong-type"])
def test_each_injected_message_is_poison_for_the_consumer(name):
    key, value = poison_messages("t")[name]
    with pytest.raises(Exception):  # noqa: B017 - the consumer turns any failure here into a dead letter
        change = decode(key, value)
        map_change(change)


def _clean_report() -> Report:
    poison = [["instashop.public.transactions", 0, 7], ["instashop.public.transactions", 2, 9]]
    return Report(
        started_at="2026-01-01T00:00:00+00:00",
        config={},
        faults=[FaultResult("consumer", "SIGKILL consumer", 60, "stream_supervisor", healthy_s=20, recovery_s=25)],
        dwh={"cells": 12, "diff": []},
        live={"windows": 5, "diff": []},
        dlq={"expected": poison, "table": poison, "topic": poison},
        end_health={"consumer": True, "Spark app": True},
    )


def test_a_clean_soak_passes():
    assert verdict(_clean_report()) == []


def test_a_fault_that_never_recovered_fails_the_soak():
    report = _clean_report()
    report.faults.append(FaultResult("kafka", "SIGKILL Kafka broker", 300, "instashop stack up", healthy_s=12))
    assert verdict(report) == ["SIGKILL Kafka broker did not recover"]


def test_any_difference_fails_the_soak():
    report = _clean_report()
    report.dwh["diff"] = ["search 2026-01-01: OLTP 10 rows | DWH 9 rows"]
    report.live["diff"] = ["cart_adds ..."]
    report.dlq["table"] = [*report.dlq["table"], ["instashop.public.searches", 1, 3]]  # not one of ours
    assert verdict(report) == [
        "DWH differs from the OLTP truth in 1 (type, day) cells",
        "Redis differs from the DWH in 1 window figures",
        "the DLQ table does not hold exactly the poison injected",
    ]


def test_nothing_compared_is_no_pass():
    report = _clean_report()
    report.dwh, report.live = {"cells": 0, "diff": []}, {"windows": 0, "diff": []}
    assert len(verdict(report)) == 2


def test_a_generator_that_died_fails_the_soak():
    report = _clean_report()
    report.generator = {"error": "OLTP database unreachable for 120s"}
    assert verdict(report) == ["the generator died: OLTP database unreachable for 120s"]


def test_a_piece_left_broken_at_the_end_fails_the_soak():
    report = _clean_report()
    report.end_health["Spark app"] = False  # e.g. crash-looping on its checkpoint after the last fault
    assert verdict(report) == ["Spark app is not healthy at the end"]


def test_recovery_counts_from_the_last_time_the_piece_became_healthy_and_needs_every_path():
    health = iter([True, False, True, True])
    flowing = {"DWH": iter([False, True, True, True]), "Redis": iter([False, False, False, True])}
    fault = Fault(
        "SIGKILL Kafka broker",
        inject=lambda: None,
        restart=lambda: "",
        healthy=lambda: next(health),
        paths={path: (lambda since, answers=answers: next(answers)) for path, answers in flowing.items()},
    )
    watch = Recovery(fault, since=0.0, settle=0.0)
    watch.look()  # healthy, nothing flowing yet
    first = watch.healthy_since
    watch.look()  # down again (e.g. Airflow's scheduler exits late): the streak is broken
    assert watch.healthy_since is None and set(watch.flowing) == {"DWH"}
    watch.look()
    assert watch.healthy_since is not None and watch.healthy_since >= first
    assert not watch.recovered()  # Redis not flowing yet
    watch.look()
    assert watch.recovered()


def test_the_soak_load_deletes_nothing_so_redis_must_equal_the_dwh():
    config = load_config(ChaosConfig(rate=50, seed=3))
    assert (config.rate, config.seed) == (50, 3)
    assert config.lifecycle.delete_failed == 0 and config.lifecycle.delete_bounce == 0
    assert config.lifecycle.refund > 0  # the other later changes stay


def test_a_figure_redis_counted_twice_is_a_difference_in_the_soak():
    window = Window(datetime(2026, 11, 27, 11, 0), datetime(2026, 11, 27, 11, 1))
    minute = int(window.start.replace(tzinfo=UTC).timestamp())
    dwh = {minute: {"transactions": 3, "revenue": Decimal("30.00"), "page_views": 9, "sessions_ended": 2}}
    doubled = {minute: {**dwh[minute], "transactions": 4, "revenue": Decimal("40.00")}}
    assert live_differences(dwh, dwh, window) == []
    found = live_differences(doubled, dwh, window)
    assert {(m.field, m.redis, m.dwh) for m in found} == {("transactions", 4, 3), ("revenue", 40, 30)}
    assert "transactions in the minute from 2026-11-27 11:00 UTC: Redis 4 must equal DWH 3" in found[0].describe()
