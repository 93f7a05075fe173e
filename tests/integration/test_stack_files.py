"""What the stack keeps on disk is readable by its owner only: data, logs, Kafka segments, secrets."""

import os
import stat

import pytest

from instashop.settings import ENV_FILE

pytestmark = pytest.mark.integration


def _others_may_read_or_write(path) -> bool:
    return bool(path.lstat().st_mode & 0o066)  # (Spark's copies of public jars keep an x bit: harmless)


def test_nothing_under_var_is_open_to_other_users(settings):
    var = settings.var_dir
    assert stat.S_IMODE(var.stat().st_mode) == 0o711  # postgres traverses it to reach its clusters
    exposed, seen = [], 0
    for root, dirs, files in os.walk(var):
        if root == str(var):
            dirs.remove("postgres-shop")  # the servers' own: checked below
            dirs.remove("postgres-dwh")
        for name in dirs + files:
            path = var / os.path.relpath(os.path.join(root, name), var)
            seen += 1
            if not path.is_symlink() and _others_may_read_or_write(path):
                exposed.append(f"{oct(stat.S_IMODE(path.lstat().st_mode))} {path}")
    assert seen > 100, "var/ holds the running stack's files"
    assert not exposed, "readable by other users:\n" + "\n".join(exposed[:20])
    for cluster in ("postgres-shop", "postgres-dwh"):
        assert stat.S_IMODE((var / cluster).resolve().joinpath("data").stat().st_mode) == 0o700


def test_the_env_file_is_private():
    assert stat.S_IMODE(ENV_FILE.stat().st_mode) == 0o600
