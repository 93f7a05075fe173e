"""The live-metrics app's answer to a failed query (plugins/instashop/live/spark/: supervision, session)."""

from instashop.live.spark import session, supervision
from instashop.live.spark.options import MICRO_BATCH, REAL_TIME


def test_a_failed_query_is_restarted_at_most_limit_times_per_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(supervision.time, "monotonic", lambda: now[0])
    restarts = supervision.Restarts(limit=2, window=60.0)
    assert restarts.allow() and restarts.allow()
    assert not restarts.allow()  # a third failure within the minute: the app gives up (exits)
    now[0] += 61
    assert restarts.allow()  # the old ones aged out


def test_tasks_get_several_attempts_in_local_mode():
    """Micro-batch retries a failed task; Real-time Mode ignores it (the query restarts instead)."""
    options = type("O", (), {"trigger": REAL_TIME, "shuffle_partitions": 1})()
    assert session._default_master(options, 18) == f"local[22,{session.TASK_ATTEMPTS}]"
    options.trigger = MICRO_BATCH
    assert session._default_master(options, 18) == f"local[*,{session.TASK_ATTEMPTS}]"
