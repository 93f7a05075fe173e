from pathlib import Path

import pytest

from instashop.devstack.env_file import write_env_file


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """A fresh `.env` as `make setup` writes it, in a scratch folder."""
    path = tmp_path / ".env"
    write_env_file(path)
    return path
