"""The live-metrics app's answer to a failed query (plugins/instashop/live/spark/app.py)."""

from instashop.live.spark import app as realtime_metrics


def test_a_failed_query_is_restarted_at_most_limit_times_per_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(realtime_metrics.time, "monotonic", lambda: now[0])
    restarts = realtime_metrics.Restarts(limit=2, window=60.0)
    assert restarts.allow() and restarts.allow()
    assert not restarts.allow()  # a third failure within the minute: the app gives up (exits)
    now[0] += 61
    assert restarts.allow()  # the old ones aged out


def test_tasks_get_several_attempts_in_local_mode():
    """Micro-batch retries a failed task; Real-time Mode ignores it (the query restarts instead)."""
    options = type("O", (), {"trigger": realtime_metrics.REAL_TIME, "shuffle_partitions": 1})()
    assert realtime_metrics._default_master(options, 18) == f"local[22,{realtime_metrics.TASK_ATTEMPTS}]"
    options.trigger = realtime_metrics.MICRO_BATCH
    assert realtime_metrics._default_master(options, 18) == f"local[*,{realtime_metrics.TASK_ATTEMPTS}]"
