"""`.env` is written once with random secrets and read back, references expanded, typed and validated."""

import pytest

from instashop.devstack.env_file import write_env_file
from instashop.settings import SettingsError, load_settings


def test_env_file_is_written_once_with_random_secrets(tmp_path):
    env = tmp_path / ".env"
    assert "REDIS_PASSWORD" in write_env_file(env)
    first = env.read_text()
    assert write_env_file(env) == []
    assert env.read_text() == first
    assert oct(env.stat().st_mode & 0o777) == "0o600"
    other = tmp_path / "other.env"
    write_env_file(other)
    assert load_settings(env).redis_password != load_settings(other).redis_password


def test_references_are_expanded_and_ports_typed(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    write_env_file(env)
    settings = load_settings(env)
    password = settings.dwh_writer_password
    assert settings.dwh_dsn == f"postgresql://dwh_writer:{password}@127.0.0.1:5433/dwh"
    assert settings.port("kafka") == 9092
    assert "dbname=instashop" in settings.shop_admin("instashop") and "port=5432" in settings.shop_admin()
    assert "dbname=superset" in settings.dwh_admin("superset") and "port=5433" in settings.dwh_admin()


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    write_env_file(env)
    monkeypatch.setenv("KAFKA_PORT", "19092")
    assert load_settings(env).port("kafka") == 19092


def test_an_unknown_key_is_refused_by_name(env_file):
    with pytest.raises(KeyError, match="NOPE is not a setting"):
        load_settings(env_file).env_value("NOPE")


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("KAFKA_PORT", "90920", "less than or equal to 65535"),
        ("DWH_POSTGRES_PORT", "five", "valid integer"),
        ("DWH_DSN", "mysql://dwh@127.0.0.1/dwh", "postgresql://"),
        ("OLTP_DSN", "postgresql://shop@127.0.0.1:port/shop", "Port could not be cast"),
        ("REDIS_URL", "127.0.0.1:6379", "redis://"),
        ("AIRFLOW_URL", "http://127.0.0.1:99999", "out of range"),
        ("KAFKA_BOOTSTRAP", "127.0.0.1", "host:port"),
        ("REDIS_PASSWORD", "", "at least 1 character"),
    ],
)
def test_a_bad_value_fails_at_load_naming_its_key(env_file, monkeypatch, key, value, why):
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=key) as err:
        load_settings(env_file)
    assert why in str(err.value)


def test_a_missing_key_fails_at_load_naming_it(env_file):
    env_file.write_text(
        "\n".join(line for line in env_file.read_text().splitlines() if not line.startswith("DWH_DSN="))
    )
    with pytest.raises(SettingsError, match="DWH_DSN: Field required"):
        load_settings(env_file)


def test_secrets_stay_out_of_the_repr(env_file):
    settings = load_settings(env_file)
    assert settings.redis_password not in repr(settings) and settings.dwh_writer_password not in repr(settings)


def test_an_older_env_gets_only_its_missing_keys(tmp_path):
    env = tmp_path / ".env"
    write_env_file(env)
    kept = load_settings(env).redis_password
    older = [line for line in env.read_text().splitlines() if not line.startswith("DWH_MAINTAINER_")]
    env.write_text("\n".join(older) + "\n")
    assert sorted(write_env_file(env)) == ["DWH_MAINTAINER_DSN", "DWH_MAINTAINER_PASSWORD"]
    settings = load_settings(env)
    assert settings.redis_password == kept
    assert settings.dwh_maintainer_dsn.startswith("postgresql://dwh_maintainer:")


ONE_CLUSTER_ENV = """\
POSTGRES_PORT=5432
POSTGRES_SUPERUSER_PASSWORD=old-superuser
DWH_WRITER_PASSWORD=kept-writer
POSTGRES_ADMIN_DSN=postgresql://postgres:${POSTGRES_SUPERUSER_PASSWORD}@127.0.0.1:${POSTGRES_PORT}/postgres
OLTP_DSN=postgresql://instashop_app:${OLTP_APP_PASSWORD}@127.0.0.1:${POSTGRES_PORT}/instashop
DWH_DSN=postgresql://dwh_writer:${DWH_WRITER_PASSWORD}@127.0.0.1:${POSTGRES_PORT}/dwh
DWH_READONLY_DSN=postgresql://dwh_readonly:x@warehouse.example:5432/dwh
"""


def test_a_one_cluster_env_moves_to_two_clusters_keeping_what_the_user_wrote(tmp_path):
    env = tmp_path / ".env"
    env.write_text(ONE_CLUSTER_ENV)
    written = write_env_file(env)
    assert {"SHOP_POSTGRES_PORT", "DWH_POSTGRES_PORT", "SHOP_ADMIN_DSN", "DWH_ADMIN_DSN", "DWH_DSN"} <= set(written)
    text = env.read_text()
    assert "${POSTGRES_PORT}" not in text and "POSTGRES_ADMIN_DSN" not in text
    settings = load_settings(env)
    assert settings.dwh_dsn == "postgresql://dwh_writer:kept-writer@127.0.0.1:5433/dwh"
    assert settings.oltp_dsn.endswith("@127.0.0.1:5432/instashop")
    assert settings.dwh_readonly_dsn == "postgresql://dwh_readonly:x@warehouse.example:5432/dwh"
