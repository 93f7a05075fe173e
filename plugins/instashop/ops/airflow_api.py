"""Airflow's REST API (v2) from outside Airflow: trigger a DAG run and follow it, as an operator would.

A JWT comes from `POST /auth/token` with the admin login of .env; it is fetched for every call, so
an api-server restart in between costs nothing.
"""

from __future__ import annotations

from typing import Any

import requests

from instashop.settings import Settings


class AirflowApiError(RuntimeError):
    pass


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
            raise AirflowApiError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()
