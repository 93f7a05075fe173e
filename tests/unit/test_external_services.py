"""EXTERNAL_SERVICES is read as names of the stack's services; anything else is refused by name."""

import pytest

from instashop.devstack import external, registry
from instashop.devstack.service import StackError
from instashop.settings import load_settings


def test_every_service_has_the_address_key_its_clients_use(env_file):
    settings = load_settings(env_file)
    for service in registry.all_services(settings):
        assert settings.env_value(external.ADDRESS_KEYS[service.name])


def test_the_names_are_a_comma_separated_list(env_file, monkeypatch):
    monkeypatch.setenv("EXTERNAL_SERVICES", " postgres-shop, kafka ,")
    assert external.external_names(load_settings(env_file), ["postgres-shop", "kafka", "redis"]) == {
        "postgres-shop",
        "kafka",
    }


def test_none_by_default(env_file):
    assert external.external_names(load_settings(env_file), ["redis"]) == set()


def test_an_unknown_name_is_refused_with_the_known_ones(env_file, monkeypatch):
    monkeypatch.setenv("EXTERNAL_SERVICES", "postgres,redis")
    with pytest.raises(StackError, match="names postgres, which the stack does not have; known: redis, kafka"):
        external.external_names(load_settings(env_file), ["redis", "kafka"])
