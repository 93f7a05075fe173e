"""Settings shared by every component, read from the repo's `.env`.

`make setup` writes `.env` once with random secrets (see `write_env_file`); every process reads
it through `load_settings()`. Variables already set in the process environment win, so a test
or an operator can override one value without editing the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from dotenv import dotenv_values
from psycopg2.extensions import make_dsn

REPO_ROOT = Path(os.environ.get("INSTASHOP_HOME", Path(__file__).resolve().parents[2]))
ENV_FILE = REPO_ROOT / ".env"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, from its first byte (no chmod-after-write window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode is not applied to a file that already existed
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass(frozen=True)
class Settings:
    """Typed view of `.env` plus the process environment."""

    values: dict[str, str] = field(repr=False)  # holds passwords: kept out of tracebacks

    def __getitem__(self, key: str) -> str:
        try:
            return self.values[key]
        except KeyError:
            raise KeyError(f"{key} is not set in {ENV_FILE} nor in the environment") from None

    def port(self, name: str) -> int:
        return int(self[f"{name.upper()}_PORT"])

    def admin_dsn(self, database: str) -> str:
        """The superuser's DSN on another database (migrations, partition maintenance)."""
        return make_dsn(self["POSTGRES_ADMIN_DSN"], dbname=database)

    @property
    def connect_auth(self) -> tuple[str, str]:
        """The Kafka Connect REST login (HTTP basic auth) that every client of its API sends."""
        return self["CONNECT_REST_USER"], self["CONNECT_REST_PASSWORD"]

    @cached_property
    def var_dir(self) -> Path:
        """Runtime state of the local stack: data, logs and pid files (git-ignored)."""
        return Path(self.values.get("INSTASHOP_VAR", REPO_ROOT / "var"))

    @property
    def repo_root(self) -> Path:
        return REPO_ROOT

    @property
    def jars_dir(self) -> Path:
        """The JVM jars `make setup` resolved from Maven Central (a link to the cache)."""
        return REPO_ROOT / ".jars"

    @property
    def main_venv(self) -> Path:
        return REPO_ROOT / ".venv"

    @property
    def superset_venv(self) -> Path:
        return REPO_ROOT / ".venv-superset"


def load_settings(env_file: Path = ENV_FILE) -> Settings:
    if not env_file.exists():
        raise FileNotFoundError(f"{env_file} is missing: run `make setup` first")
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    values.update({k: v for k, v in os.environ.items() if k in values or k == "INSTASHOP_VAR"})
    return Settings(values)
