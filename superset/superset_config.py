"""Superset configuration of the InstaShop DWH (loaded through SUPERSET_CONFIG_PATH).

Superset runs in its own virtual environment (.venv-superset). setup/setup.sh installs `instashop`
there editable but without its dependencies (the live charts' adapter needs only its Redis key
schema, `instashop.live.metrics`), so `instashop.settings` (pydantic-settings) does not import
there and this file reads the repo's `.env` itself. As everywhere in the project, the process
environment wins over `.env`. Secrets come only from there: nothing here is a fixed password or key.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from sqlalchemy.engine.url import URL

# Lower-case names: Superset takes every upper-case name of this module as a setting.
_env_file = Path(__file__).resolve().parents[1] / ".env"
_env: dict[str, str] = {
    **{k: v for k, v in dotenv_values(_env_file).items() if v is not None},
    **os.environ,
}


def _require(key: str) -> str:
    if not _env.get(key):
        raise RuntimeError(f"{key} is not set in {_env_file} nor in the environment: run `make setup`")
    return _env[key]


# Signs sessions and encrypts the database passwords stored in the metadata DB: changing it
# later makes those unreadable. Without it Superset would fall back to a public default key.
SECRET_KEY = _require("SUPERSET_SECRET_KEY")

# Metadata DB: users, dashboards, charts, saved queries (database `superset` on the stack's Postgres).
SQLALCHEMY_DATABASE_URI = _require("SUPERSET_DB_DSN")
# Connections survive a Postgres restart underneath a running Superset.
SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

# --- caches -------------------------------------------------------------------------------------
# Redis db 0 holds the live:* metrics; Superset's caches get db 1 so a flush or a key scan on one
# side never touches the other. Prefixes keep the caches apart inside db 1. Superset's Redis user
# may touch only superset_* (and its rate limiter's LIMITS*) keys.
_cache_redis_url = _require("REDIS_SUPERSET_URL")


def _redis_cache(prefix: str, timeout: timedelta) -> dict[str, object]:
    return {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": _cache_redis_url,
        "CACHE_KEY_PREFIX": f"superset_{prefix}_",
        "CACHE_DEFAULT_TIMEOUT": int(timeout.total_seconds()),
    }


# Metadata (dashboards, dataset columns) changes rarely.
CACHE_CONFIG = _redis_cache("meta", timedelta(days=1))
# Query results of the DWH charts: short-lived, as the DWH is fed continuously (and Redis evicts
# keys with TTLs first under memory pressure, so large long-lived results would crowd out live
# metrics). The Live database of the dashboards bundle sets its own cache_timeout to -1 (never
# cached): its charts read Redis, which is cheaper than a cache round trip and always current.
DATA_CACHE_CONFIG = _redis_cache("data", timedelta(minutes=5))

# --- rate limits ---------------------------------------------------------------------------------
# Superset turns flask-limiter on only when SUPERSET_ENV=production; here it is on, with counters in
# Redis so both gunicorn workers share them. The app-wide limit is raised from 50 to 200 requests a
# second: a dashboard's charts and the tests' API calls come in bursts from one address (loopback).
RATELIMIT_ENABLED = True
AUTH_RATE_LIMITED = True
AUTH_RATE_LIMIT = "5 per second"
RATELIMIT_APPLICATION = "200 per second"
RATELIMIT_STORAGE_URI = _cache_redis_url


def FLASK_APP_MUTATOR(app) -> None:
    """Put AUTH_RATE_LIMIT on the password checks themselves.

    FAB limits its auth view's blueprint, which on Superset 6.1 is SupersetAuthView: it only serves
    the login page (GET). The POST of the form is answered by FAB's AuthDBView on the same route,
    and the REST login by SecurityApi; neither was limited (12 wrong passwords in 0.12 s were all
    answered). Both views are registered before this hook runs.
    """
    from flask_appbuilder.security.api import SecurityApi
    from flask_appbuilder.security.views import AuthDBView

    limit = app.appbuilder.sm.limiter.limit(AUTH_RATE_LIMIT, methods=["POST"])
    for view in app.appbuilder.baseviews:
        if isinstance(view, AuthDBView | SecurityApi):
            limit(view.blueprint)


# --- dashboards ----------------------------------------------------------------------------------
# Imported from superset/dashboards/ at start (instashop.devstack.superset); `refresh_frequency` in a
# dashboard's json_metadata sets its auto-refresh. The Live dashboard refreshes every 5 s, so the
# menu offers that too. "force" makes each refresh bypass the data cache.
DASHBOARD_AUTO_REFRESH_MODE = "force"
DASHBOARD_AUTO_REFRESH_INTERVALS = [
    [0, "Don't refresh"],
    [5, "5 seconds"],
    [10, "10 seconds"],
    [30, "30 seconds"],
    [60, "1 minute"],
    [300, "5 minutes"],
    [1800, "30 minutes"],
    [3600, "1 hour"],
]

# --- query limits ---------------------------------------------------------------------------------
ROW_LIMIT = 10_000  # default for a chart's query
SAMPLES_ROW_LIMIT = 1_000  # "samples" pane in Explore
SQL_MAX_ROW = 100_000  # hard cap for any query, SQL Lab included
DISPLAY_MAX_ROW = 10_000  # rows SQL Lab shows in the browser

# --- SQL Lab -------------------------------------------------------------------------------------
# Queries run synchronously in the web workers (no Celery): keep them bounded and below the
# gunicorn timeout (120 s, see instashop.devstack.superset).
SQLLAB_TIMEOUT = 60
SUPERSET_WEBSERVER_TIMEOUT = 120
DEFAULT_SQLLAB_LIMIT = 1_000
# The databases come with the dashboards bundle (superset/dashboards/databases/): "InstaShop DWH"
# logs in as the read-only role of DWH_READONLY_DSN (SELECT grants only, default_transaction_read_only)
# and is exposed in SQL Lab with allow_dml off, so Superset itself refuses INSERT/UPDATE/DELETE/DDL
# before Postgres would; its statement_timeout equals SQLLAB_TIMEOUT. "InstaShop Live" is the
# Redis adapter below, also read-only by construction.

# --- live metrics (Redis) -------------------------------------------------------------------------
# The Live database is `shillelagh+safe://` limited to the `instashop_live` adapter (superset/
# instashop_live). Its Redis URL holds a password, so it is not stored in Superset (the database
# extra is readable by every admin and lands in exports): it is added here, from .env, each time
# Superset creates an engine for a shillelagh database.
_live_adapter = "instashop_live"


def DB_CONNECTION_MUTATOR(
    uri: URL, params: dict[str, Any], username: str | None, security_manager: Any, source: Any
) -> tuple[URL, dict[str, Any]]:
    if uri.drivername.startswith("shillelagh"):
        adapter_kwargs = params.setdefault("adapter_kwargs", {})
        adapter_kwargs.setdefault(_live_adapter, {})["redis_url"] = _require("REDIS_LIVE_READER_URL")
    return uri, params


# --- security -----------------------------------------------------------------------------------
WTF_CSRF_ENABLED = True
# Only `shillelagh+safe://` (the live Redis charts) and real databases; never plain shillelagh/sqlite.
PREVENT_UNSAFE_DB_CONNECTIONS = True
