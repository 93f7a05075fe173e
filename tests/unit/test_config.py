"""`.env` is written once with random secrets and read back with references expanded."""

from instashop.devstack.env_file import write_env_file
from instashop.settings import load_settings


def test_env_file_is_written_once_with_random_secrets(tmp_path):
    env = tmp_path / ".env"
    assert "REDIS_PASSWORD" in write_env_file(env)
    first = env.read_text()
    assert write_env_file(env) == []
    assert env.read_text() == first
    assert oct(env.stat().st_mode & 0o777) == "0o600"
    other = tmp_path / "other.env"
    write_env_file(other)
    assert load_settings(env)["REDIS_PASSWORD"] != load_settings(other)["REDIS_PASSWORD"]


def test_references_are_expanded_and_ports_typed(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    write_env_file(env)
    settings = load_settings(env)
    password = settings["DWH_WRITER_PASSWORD"]
    assert settings["DWH_DSN"] == f"postgresql://dwh_writer:{password}@127.0.0.1:5432/dwh"
    assert settings.port("kafka") == 9092
    assert "dbname=instashop" in settings.admin_dsn("instashop")


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    write_env_file(env)
    monkeypatch.setenv("KAFKA_PORT", "19092")
    assert load_settings(env).port("kafka") == 19092


def test_missing_key_names_the_file(tmp_path):
    env = tmp_path / ".env"
    write_env_file(env)
    try:
        load_settings(env)["NOPE"]
    except KeyError as err:
        assert "NOPE is not set" in str(err)
    else:
        raise AssertionError("expected KeyError")


def test_an_older_env_gets_only_its_missing_keys(tmp_path):
    env = tmp_path / ".env"
    write_env_file(env)
    kept = load_settings(env)["REDIS_PASSWORD"]
    older = [line for line in env.read_text().splitlines() if not line.startswith("DWH_MAINTAINER_")]
    env.write_text("\n".join(older) + "\n")
    assert sorted(write_env_file(env)) == ["DWH_MAINTAINER_DSN", "DWH_MAINTAINER_PASSWORD"]
    settings = load_settings(env)
    assert settings["REDIS_PASSWORD"] == kept
    assert settings["DWH_MAINTAINER_DSN"].startswith("postgresql://dwh_maintainer:")
