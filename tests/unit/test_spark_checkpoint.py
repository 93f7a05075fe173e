"""Where the live-metrics app keeps its checkpoint: a local folder or a cluster file system URI."""

from pathlib import Path

import pytest

from instashop.live.spark.app import parse_args
from instashop.live.spark.options import spark_scratch
from instashop.settings import load_settings


@pytest.fixture
def settings(env_file):
    return load_settings(env_file)


@pytest.mark.parametrize("uri", ["s3a://analytics/instashop/live-v2", "hdfs://nn:8020/instashop/live-v2"])
def test_a_checkpoint_uri_reaches_spark_as_written(settings, uri):
    """It was a Path: `s3a://b/x` became `s3a:/b/x`, which no Hadoop file system resolves."""
    options = parse_args(["--checkpoint", uri], settings)
    assert options.checkpoint == uri
    # The driver's temporary files stay on this machine whatever the checkpoint's file system.
    assert options.scratch == settings.var_dir / "spark" / "scratch" / "live-v2.scratch"


def test_a_local_checkpoint_keeps_its_scratch_beside_it(settings, tmp_path):
    options = parse_args(["--checkpoint", str(tmp_path / "cp")], settings)
    assert options.checkpoint == str(tmp_path / "cp")
    assert options.scratch == spark_scratch(tmp_path / "cp") == tmp_path / "cp.scratch"


def test_a_file_uri_is_a_local_checkpoint(settings, tmp_path):
    options = parse_args(["--checkpoint", f"file://{tmp_path}/cp"], settings)
    assert options.scratch == tmp_path / "cp.scratch"


def test_the_default_checkpoint_is_under_var(settings):
    options = parse_args([], settings)
    assert Path(options.checkpoint).parent == settings.var_dir / "spark" / "checkpoints"
