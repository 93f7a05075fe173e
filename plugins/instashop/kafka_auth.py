"""Who may do what on Kafka, and the one way every client logs in (SASL/SCRAM-SHA-512).

Each component is a Kafka principal of its own, with a password generated into `.env`; the broker
(StandardAuthorizer, `allow.everyone.if.no.acl.found=false`) lets it do only what `acls()` grants.
`client_config` builds a librdkafka config for a principal, `java_client_properties` the same for
the JVM clients (Kafka Connect, Spark's Kafka source and sink). The stack's broker creates the SCRAM
users and the ACLs at every `make up` (instashop.devstack.kafka).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from instashop.capture import topics
from instashop.settings import Settings

PROTOCOL = "SASL_PLAINTEXT"  # loopback only: SASL authenticates, nothing crosses the machine
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192

# The broker/controller itself (PLAIN, on the controller and inter-broker connections) and the
# stack's own management of users and ACLs; never given to a component.
BROKER = "broker"
# Super user: topic management by the stack, set-up and inspection by tests, chaos and benchmarks.
ADMIN = "admin"
# The Kafka Connect worker and Debezium: Connect's internal topics, and the CDC topics.
CONNECT = "connect"
# The DWH consumer: reads the CDC topics, writes the dead letters and the enriched items.
CONSUMER = "consumer"
# The Spark app: reads the CDC and enriched topics, writes and relays its `instashop.live.*` topics.
SPARK = "spark"
# Airflow's supervisor: the DWH consumer group's lag (offsets), nothing else.
AIRFLOW = "airflow"

# principal -> its password's key in .env
PASSWORD_KEYS = {
    BROKER: "KAFKA_BROKER_PASSWORD",
    ADMIN: "KAFKA_ADMIN_PASSWORD",
    CONNECT: "KAFKA_CONNECT_PASSWORD",
    CONSUMER: "KAFKA_CONSUMER_PASSWORD",
    SPARK: "KAFKA_SPARK_PASSWORD",
    AIRFLOW: "KAFKA_AIRFLOW_PASSWORD",
}
SUPER_USERS = (BROKER, ADMIN)
SCRAM_USERS = (ADMIN, CONNECT, CONSUMER, SPARK, AIRFLOW)

CDC_TOPICS = "instashop.public."  # Debezium's <topic.prefix>.<schema>.<table>
DEBEZIUM_HEARTBEATS = "__debezium-heartbeat.instashop"
CONNECT_GROUP = "instashop-connect"
CONNECT_INTERNAL_TOPICS = ("connect-configs", "connect-offsets", "connect-status")
CONSUMER_GROUP = "instashop-dwh"
LIVE_TOPICS = "instashop.live."  # topics.live_aggregates(<live:… key prefix>), and their relay groups
SPARK_SOURCE_GROUPS = "spark-kafka-"  # Spark's Kafka source names its (unused) groups spark-kafka-source-…


def client_config(settings: Settings, principal: str) -> dict[str, Any]:
    """librdkafka (confluent-kafka) settings that connect to the stack's broker as `principal`."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": PROTOCOL,
        "sasl.mechanisms": MECHANISM,
        "sasl.username": principal,
        "sasl.password": settings.env_value(PASSWORD_KEYS[principal]),
    }


def broker_client_config(settings: Settings) -> dict[str, Any]:
    """The broker's own principal (PLAIN): the stack's health check, and its bootstrap, which creates
    the SCRAM users (so it must log in before any exists, as on a storage formatted without them)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": PROTOCOL,
        "sasl.mechanisms": "PLAIN",
        "sasl.username": BROKER,
        "sasl.password": settings.env_value(PASSWORD_KEYS[BROKER]),
    }


def java_client_properties(settings: Settings, principal: str) -> dict[str, str]:
    """The Java client's settings for `principal` (without bootstrap.servers)."""
    return {
        "security.protocol": PROTOCOL,
        "sasl.mechanism": MECHANISM,
        "sasl.jaas.config": jaas_login(principal, settings.env_value(PASSWORD_KEYS[principal])),
    }


def spark_options(settings: Settings, principal: str) -> dict[str, str]:
    """Options of Spark's Kafka source and sink (`kafka.`-prefixed client settings) for `principal`.
    Spark redacts option values that mention a password in its logs and UI."""
    client = {"bootstrap.servers": settings.kafka_bootstrap, **java_client_properties(settings, principal)}
    return {f"kafka.{key}": value for key, value in client.items()}


SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def jaas_login(user: str, password: str, module: str = SCRAM_LOGIN_MODULE) -> str:
    # Passwords are URL-safe (devstack.env_file): nothing to escape inside the quotes.
    return f'{module} required username="{user}" password="{password}";'


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: ResourceType
    name: str
    operations: tuple[AclOperation, ...]
    prefixed: bool = False

    def bindings(self) -> list[AclBinding]:
        pattern = ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL
        return [
            AclBinding(self.resource, self.name, pattern, f"User:{self.principal}", "*", op, AclPermissionType.ALLOW)
            for op in self.operations
        ]


R, W, D, C = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP

# An idempotent producer needs no IDEMPOTENT_WRITE on the cluster since Kafka 2.8 (KIP-679): WRITE
# on any topic is enough, so no principal gets a cluster permission.
GRANTS = (
    # Connect: its group and internal topics (it creates them at first start) ...
    Grant(CONNECT, GROUP, CONNECT_GROUP, (R,)),
    *(Grant(CONNECT, TOPIC, t, (R, W, D, C, AclOperation.DESCRIBE_CONFIGS)) for t in CONNECT_INTERNAL_TOPICS),
    # ... Debezium's CDC and heartbeat topics (created by Connect's topic.creation.* settings) ...
    Grant(CONNECT, TOPIC, CDC_TOPICS, (W, D, C), prefixed=True),
    Grant(CONNECT, TOPIC, DEBEZIUM_HEARTBEATS, (W, D, C)),
    # ... and the groups of sink connectors (connect-<name>; only the benchmarks' JDBC sink, whose
    # scratch topics the benchmark grants for its run).
    Grant(CONNECT, GROUP, "connect-", (R,), prefixed=True),
    # The consumer: the CDC topics in its group; the dead letters and enriched items (which it may
    # auto-create, as the first message to them does).
    Grant(CONSUMER, TOPIC, CDC_TOPICS, (R, D), prefixed=True),
    Grant(CONSUMER, GROUP, CONSUMER_GROUP, (R,)),
    Grant(CONSUMER, TOPIC, topics.DEAD_LETTERS, (W, D, C)),
    Grant(CONSUMER, TOPIC, topics.ENRICHED_TRANSACTION_ITEMS, (W, D, C)),
    # Spark: the CDC and enriched topics; its live topics (query sink -> relay) and their groups.
    Grant(SPARK, TOPIC, CDC_TOPICS, (R, D), prefixed=True),
    Grant(SPARK, TOPIC, topics.ENRICHED_TRANSACTION_ITEMS, (R, D)),
    Grant(SPARK, TOPIC, LIVE_TOPICS, (R, W, D, C), prefixed=True),
    Grant(SPARK, GROUP, LIVE_TOPICS, (R,), prefixed=True),
    Grant(SPARK, GROUP, SPARK_SOURCE_GROUPS, (R,), prefixed=True),
    # Airflow: the consumer group's committed offsets and the CDC topics' offsets, read-only.
    Grant(AIRFLOW, GROUP, CONSUMER_GROUP, (D,)),
    Grant(AIRFLOW, TOPIC, CDC_TOPICS, (D,), prefixed=True),
)


def acls() -> list[AclBinding]:
    """Every ACL of the stack (created idempotently by the broker's bootstrap)."""
    return [binding for grant in GRANTS for binding in grant.bindings()]


def scratch_grants(principal: str, topic_prefix: str, group_prefix: str | None = None) -> list[AclBinding]:
    """What a benchmark or test grants a component (as admin) on its scratch topics for one run."""
    grants = [Grant(principal, TOPIC, topic_prefix, (R, W, D, C), prefixed=True)]
    if group_prefix is not None:
        grants.append(Grant(principal, GROUP, group_prefix, (R,), prefixed=True))
    return [binding for grant in grants for binding in grant.bindings()]


def grant(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()


def revoke(admin: AdminClient, bindings: list[AclBinding]) -> None:
    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
        )
        for b in bindings
    ]
    for future in admin.delete_acls(filters, request_timeout=30).values():
        future.result()
