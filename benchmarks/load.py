"""Shop traffic for the benchmarks, on threads that report a failed load instead of hiding it.

A generator thread that dies leaves a benchmark measuring probes on an idle pipeline: it would
print "achieved 0 ev/s" and a p99 from a handful of probes as if they were a result. A LoadThread
keeps the exception, and `summary()` raises BrokenRun with the reason, which the benchmark's
main turns into a non-zero exit without a result.

    load = LoadThread(settings.oltp_dsn, generator.GeneratorConfig(rate=1000, duration=60))
    load.start(); ...; load.join(); summary = load.summary()
"""

from __future__ import annotations

import threading

from instashop.devstack import generator


class BrokenRun(RuntimeError):
    """The benchmark's load or set-up failed: no figure of this run may be reported."""


class LoadThread(threading.Thread):
    def __init__(self, dsn: str, config: generator.GeneratorConfig, name: str = "bench-load") -> None:
        super().__init__(name=name, daemon=True)
        self._dsn, self._config = dsn, config
        self._summary: generator.Summary | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._summary = generator.run(self._dsn, self._config, show_progress=False)
        except BaseException as err:  # kept for summary(): the benchmark must not report this run
            self._error = err

    def summary(self) -> generator.Summary:
        """The load's figures once the thread ended; BrokenRun if it failed or is still running."""
        if self.is_alive():
            raise BrokenRun(f"{self.name} is still running")
        if self._error is not None:
            raise BrokenRun(f"the load generator failed: {type(self._error).__name__}: {self._error}") from self._error
        if self._summary is None:
            raise BrokenRun(f"{self.name} was never started")
        return self._summary
