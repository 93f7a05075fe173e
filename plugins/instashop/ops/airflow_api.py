"""Airflow's REST API (v2) from outside Airflow: trigger a DAG run and follow it, as an operator would
(the chaos drills, the benchmarks and the integration tests use it).

A JWT comes from `POST /auth/token` with the admin login of .env; it is fetched for every call, so
an api-server restart in between costs nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from instashop.settings import Settings


class AirflowApiError(RuntimeError):
    """A call that failed; status and body are the answer's, when there was one (None: unreachable)."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AirflowClient:
    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.base = settings.airflow_url.rstrip("/")
        self.credentials = {"username": settings.airflow_admin_user, "password": settings.airflow_admin_password}
        self.timeout = timeout

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a run now (no logical date, like the UI's Trigger button); returns its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        """queued, running, success or failed."""
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for(self, dag_id: str, run_id: str, timeout: float = 240, poll: float = 2) -> str:
        """Wait until the run ends; returns success or failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise AirflowApiError(f"{dag_id} run {run_id} did not finish within {timeout:.0f}s")

    def active_runs(self, dag_id: str) -> list[str]:
        """Run ids of the DAG's queued and running runs."""
        params = {"state": ["queued", "running"], "limit": 100}
        runs = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"]
        return [run["dag_run_id"] for run in runs]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        items = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in items}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as the UI shows it."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self._call("GET", path, params={"full_content": "true"})["content"]
        return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in content)

    def has_dag(self, dag_id: str) -> bool:
        """Whether the DAG is parsed (known to the API server)."""
        try:
            self._call("GET", f"/api/v2/dags/{dag_id}")
        except AirflowApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    def is_paused(self, dag_id: str) -> bool:
        return bool(self._call("GET", f"/api/v2/dags/{dag_id}")["is_paused"])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause (no new runs, scheduled or triggered) or unpause, like the UI's toggle."""
        self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def _token(self) -> str:
        return self._request("POST", "/auth/token", json=self.credentials)["access_token"]

    def _call(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        return self._request(method, path, headers={"Authorization": f"Bearer {self._token()}"}, **kwargs)

    def _request(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        try:
            response = requests.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as err:
            raise AirflowApiError(f"Airflow at {self.base} is unreachable: {err}") from None
        if not response.ok:
            raise AirflowApiError(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}",
                response.status_code,
                response.text,
            )
        return response.json()
