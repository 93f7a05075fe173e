"""The Kafka principals: every client config logs in, every password is generated, and the ACLs
give each component only its part."""

from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from instashop import kafka_auth
from instashop.capture import topics
from instashop.devstack import env_file
from instashop.devstack.env_file import write_env_file
from instashop.settings import load_settings


def _settings(tmp_path):
    env = tmp_path / ".env"
    write_env_file(env)
    return load_settings(env)


def test_every_principal_has_a_generated_password(tmp_path):
    settings = _settings(tmp_path)
    for principal, key in kafka_auth.PASSWORD_KEYS.items():
        assert key in env_file._SECRET_KEYS, principal
        assert len(settings.env_value(key)) >= 24


def test_client_configs_log_in_with_scram(tmp_path):
    settings = _settings(tmp_path)
    client = kafka_auth.client_config(settings, kafka_auth.CONSUMER)
    assert client["security.protocol"] == "SASL_PLAINTEXT"
    assert client["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert (client["sasl.username"], client["sasl.password"]) == ("consumer", settings.kafka_consumer_password)
    spark = kafka_auth.spark_options(settings, kafka_auth.SPARK)
    assert spark["kafka.bootstrap.servers"] == settings.kafka_bootstrap
    assert spark["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert spark["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="spark" password="{settings.kafka_spark_password}";'
    )


def _allowed(principal: str, operation: AclOperation, topic: str) -> bool:
    for acl in kafka_auth.acls():
        if acl.principal != f"User:{principal}" or acl.restype != ResourceType.TOPIC or acl.operation != operation:
            continue
        prefixed = acl.resource_pattern_type == ResourcePatternType.PREFIXED
        if topic == acl.name or (prefixed and topic.startswith(acl.name)):
            return True
    return False


def test_only_connect_writes_the_cdc_topics_and_only_the_consumer_the_outputs():
    cdc = "instashop.public.transactions"
    writers = {p for p in kafka_auth.SCRAM_USERS if _allowed(p, AclOperation.WRITE, cdc)}
    assert writers == {kafka_auth.CONNECT}  # admin is a super user: no ACL needed
    for output in (topics.DEAD_LETTERS, topics.ENRICHED_TRANSACTION_ITEMS):
        assert {p for p in kafka_auth.SCRAM_USERS if _allowed(p, AclOperation.WRITE, output)} == {kafka_auth.CONSUMER}
    assert {p for p in kafka_auth.SCRAM_USERS if _allowed(p, AclOperation.READ, topics.DEAD_LETTERS)} == set()


def test_no_component_has_a_cluster_permission_or_is_a_super_user():
    assert not [acl for acl in kafka_auth.acls() if acl.restype == ResourceType.BROKER]
    assert set(kafka_auth.SUPER_USERS) == {kafka_auth.BROKER, kafka_auth.ADMIN}
