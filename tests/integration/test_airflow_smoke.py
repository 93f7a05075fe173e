"""The stack's Airflow answers, logs the admin in from .env, refuses a wrong password, and every
component reports healthy."""

import pytest
import requests

from instashop.settings import Settings, load_settings

pytestmark = pytest.mark.integration

TIMEOUT = 10


@pytest.fixture(scope="module")
def airflow() -> Settings:
    return load_settings()


def _url(settings: Settings, path: str) -> str:
    return settings.airflow_url.rstrip("/") + path


def _token(settings: Settings, password: str) -> requests.Response:
    return requests.post(
        _url(settings, "/auth/token"),
        json={"username": settings.airflow_admin_user, "password": password},
        timeout=TIMEOUT,
    )


def test_version_is_3_3_2(airflow):
    response = requests.get(_url(airflow, "/api/v2/version"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["version"] == "3.3.2"


def test_admin_gets_a_jwt_that_lists_dags(airflow):
    response = _token(airflow, airflow.airflow_admin_password)
    assert response.status_code == 201, response.text
    token = response.json()["access_token"]
    assert token.count(".") == 2  # header.payload.signature
    headers = {"Authorization": f"Bearer {token}"}
    dags = requests.get(_url(airflow, "/api/v2/dags"), headers=headers, timeout=TIMEOUT)
    assert dags.status_code == 200, dags.text
    assert "dags" in dags.json()


def test_wrong_password_and_missing_token_are_refused(airflow):
    assert _token(airflow, "not-the-password").status_code in (401, 403)
    assert requests.get(_url(airflow, "/api/v2/dags"), timeout=TIMEOUT).status_code in (401, 403)


def test_scheduler_dag_processor_and_triggerer_are_healthy(airflow):
    health = requests.get(_url(airflow, "/api/v2/monitor/health"), timeout=TIMEOUT).json()
    parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    assert {part: health[part]["status"] for part in parts} == dict.fromkeys(parts, "healthy")
