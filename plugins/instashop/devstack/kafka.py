"""Kafka 4 (KRaft) and a Kafka Connect worker with Debezium, run from the Maven-resolved jars in .jars/.

One broker in combined mode (broker and controller in one JVM) keeps the topics under var/kafka; one
distributed Connect worker keeps connector configs, offsets and status in Kafka topics and loads the
Debezium Postgres plugin, isolated, from .jars/connect-plugins.

The Connect REST API asks for HTTP basic auth (Kafka's BasicAuthSecurityRestExtension: a JAAS login
module over a credentials file under var/connect, 0600); the worker gets only the environment
variables its connectors reference, and its env config provider resolves no other.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import requests
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from instashop import kafka_auth
from instashop.devstack.service import Service
from instashop.settings import Settings, write_private

log = logging.getLogger(__name__)

DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
# Small heaps for a dev box; on OutOfMemoryError the JVM exits rather than limp on half-broken.
JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+ExitOnOutOfMemoryError")
BASIC_AUTH_EXTENSION = "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
PROPERTY_FILE_LOGIN = "org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule"
# The .env values the connector configs reference as ${env:NAME} (stack/connect/*.json, and the JDBC
# sink of benchmarks/jdbc_sink.py): the worker's whole environment, and all its env provider resolves.
CONNECTOR_VARIABLES = ("SHOP_POSTGRES_PORT", "DWH_POSTGRES_PORT", "DEBEZIUM_PASSWORD", "JDBC_SINK_PASSWORD")
# The client settings connectors may override (`producer.override.*`, `consumer.override.*`).
CLIENT_OVERRIDES = (
    "linger.ms",
    "batch.size",
    "compression.type",
    "max.poll.records",
    "max.partition.fetch.bytes",
    "auto.offset.reset",
)
# What the JVM itself may want from the caller's environment (none of it is a secret).
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "JAVA_HOME")


class KafkaBroker(Service):
    name = "kafka"
    port_key = "kafka"

    @property
    def conf_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "data"

    def command(self) -> list[str]:
        return _java(self.settings, "kafka.Kafka", str(self.conf_file))

    def prepare(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        controller = f"127.0.0.1:{self.settings.port('kafka_controller')}"
        # Written on every start so a port change in .env takes effect.
        _write_properties(
            self.conf_file,
            {
                "process.roles": "broker,controller",
                "node.id": 1,
                # A static voter, not a `--standalone` dynamic quorum: that one records the controller's
                # endpoint in the metadata log at format time, so a port change in .env would not apply.
                "controller.quorum.voters": f"1@{controller}",
                "listeners": f"CLIENT://127.0.0.1:{self.port},CONTROLLER://{controller}",
                "advertised.listeners": f"CLIENT://127.0.0.1:{self.port}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "CLIENT",
                **self._authentication(),
                **self._authorization(),
                "log.dirs": self.log_dir,
                "num.partitions": 3,
                "auto.create.topics.enable": "true",
                # One node: one replica of everything, internal topics included.
                "default.replication.factor": 1,
                "min.insync.replicas": 1,
                "offsets.topic.replication.factor": 1,
                "transaction.state.log.replication.factor": 1,
                "transaction.state.log.min.isr": 1,
                "share.coordinator.state.topic.replication.factor": 1,
                "share.coordinator.state.topic.min.isr": 1,
                # Nobody else is coming: a new consumer group starts at once instead of after 3 s.
                "group.initial.rebalance.delay.ms": 0,
            },
        )
        if not (self.log_dir / "meta.properties").exists():
            self._format_storage()

    def _authentication(self) -> dict[str, str]:
        """SASL on both listeners, loopback only. Clients log in with SCRAM-SHA-512 (users in the
        metadata log, see bootstrap); the broker and controller with PLAIN as `broker`, whose one
        password is in this 0600 file: KRaft cannot use SCRAM between controller and broker (the
        credentials live in the metadata the controller serves), and PLAIN on the client listener
        lets `bootstrap` log in before any SCRAM user exists."""
        password = self.settings.env_value(kafka_auth.PASSWORD_KEYS[kafka_auth.BROKER])
        user = kafka_auth.BROKER
        plain = f'{PLAIN_LOGIN} required username="{user}" password="{password}" user_{user}="{password}";'
        return {
            "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": f"{kafka_auth.MECHANISM},PLAIN",
            "listener.name.client.scram-sha-512.sasl.jaas.config": f"{SCRAM_LOGIN} required;",
            "listener.name.client.plain.sasl.jaas.config": plain,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
        }

    def _authorization(self) -> dict[str, str]:
        """ACLs decide (kafka_auth.acls); what no ACL allows is denied, to everyone but the super users."""
        return {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(f"User:{user}" for user in kafka_auth.SUPER_USERS),
        }

    def is_healthy(self) -> bool:
        try:
            # log_level 0: no librdkafka "connection refused" lines while the broker starts.
            admin = AdminClient({**kafka_auth.broker_client_config(self.settings), "log_level": 0})
            return bool(admin.list_topics(timeout=2).brokers)
        except KafkaException:
            return False

    def bootstrap(self) -> None:
        """The SCRAM users and the ACLs, at every start: a storage formatted by an older stack (no
        users yet) comes up the same, and a password or ACL changed in the code takes effect."""
        admin = AdminClient(kafka_auth.broker_client_config(self.settings))
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, kafka_auth.SCRAM_ITERATIONS)
        users: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, info, self.settings.env_value(kafka_auth.PASSWORD_KEYS[user]).encode())
            for user in kafka_auth.SCRAM_USERS
        ]
        for future in admin.alter_user_scram_credentials(users, request_timeout=30).values():
            future.result()
        for future in admin.create_acls(kafka_auth.acls(), request_timeout=30).values():
            future.result()
        log.info("kafka: %d SCRAM users and %d ACLs in place", len(users), len(kafka_auth.acls()))

    def urls(self) -> list[str]:
        return [f"{self.settings.kafka_bootstrap}  (Kafka bootstrap, KAFKA_BOOTSTRAP in .env)"]

    def _format_storage(self) -> None:
        """Give the log directory its cluster id and initial metadata (KRaft refuses unformatted ones)."""
        # Kafka's own Uuid format; `=` keeps an id starting with "-" from reading as an option.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        args = ("format", f"--cluster-id={cluster_id}", "--config", str(self.conf_file))
        try:
            subprocess.run(
                _java(self.settings, "kafka.tools.StorageTool", *args),
                check=True,
                capture_output=True,
                text=True,
                cwd=self.data_dir,
            )
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"formatting {self.log_dir} failed:\n{err.stdout}\n{err.stderr}") from err


class KafkaConnect(Service):
    name = "connect"
    port_key = "connect"
    # The worker scans its plugins and joins its group before the REST API lists them (20-40 s).
    health_timeout = 120.0

    @property
    def conf_file(self) -> Path:
        return self.data_dir / "connect-distributed.properties"

    @property
    def jaas_file(self) -> Path:
        return self.data_dir / "rest-jaas.conf"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "rest-credentials.properties"

    def command(self) -> list[str]:
        return _java(
            self.settings,
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(self.conf_file),
            jvm_options=(f"-Djava.security.auth.login.config={self.jaas_file}",),
        )

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_rest_login()
        _write_properties(
            self.conf_file,
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                **self._kafka_login(),
                "group.id": kafka_auth.CONNECT_GROUP,
                "config.storage.topic": "connect-configs",
                "offset.storage.topic": "connect-offsets",
                "status.storage.topic": "connect-status",
                "config.storage.replication.factor": 1,
                "offset.storage.replication.factor": 1,
                "status.storage.replication.factor": 1,
                # Connectors override these (Debezium's envelopes are decoded with their schemas).
                "key.converter": JSON_CONVERTER,
                "value.converter": JSON_CONVERTER,
                "listeners": f"http://127.0.0.1:{self.port}",
                "rest.advertised.host.name": "127.0.0.1",
                "rest.advertised.port": self.port,
                "plugin.path": self.settings.jars_dir / "connect-plugins",
                # Debezium and Kafka ship ServiceLoader manifests: skip the reflective scan of every jar
                # (14 s of a 20 s start-up here). A plugin without manifests would not be found.
                "plugin.discovery": "service_load",
                # Source offsets (Debezium's LSN) are stored every second: less to replay after a crash.
                "offset.flush.interval.ms": 1000,
                # A single worker: after a crash its successor takes the lost tasks at once instead of
                # waiting (5 min by default) for the dead worker to come back.
                "scheduled.rebalance.max.delay.ms": 0,
                # Every REST request but the workers' own signed ones needs the login (JAAS KafkaConnect).
                "rest.extension.classes": BASIC_AUTH_EXTENSION,
                # Connector configs reference secrets as ${env:NAME}: resolved here, never shown by REST.
                # Only the connectors' variables resolve (KIP-887): a config naming any other is left as
                # written, so whoever may PUT a connector cannot read the worker's environment through it.
                "config.providers": "env",
                "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
                "config.providers.env.param.allowlist.pattern": "|".join(CONNECTOR_VARIABLES),
                # Connectors may tune their clients, and nothing else: Debezium its producer's linger,
                # batch size and compression, the JDBC sink its consumer's poll size and start offset
                # (Allowlist, KIP-1188, new in 4.3). `All` (before) and `Principal` would both let a
                # connector override sasl.jaas.config, i.e. log in to Kafka as another principal;
                # `None` would refuse Debezium's tuning.
                "connector.client.config.override.policy": "Allowlist",
                "connector.client.config.override.allowlist": ",".join(CLIENT_OVERRIDES),
            },
        )

    def _kafka_login(self) -> dict[str, str]:
        """The worker's principal for its own clients and for its connectors' producers, consumers and
        admin clients (Connect passes them only the `producer.`, `consumer.`, `admin.` prefixed ones)."""
        login = kafka_auth.java_client_properties(self.settings, kafka_auth.CONNECT)
        return {
            f"{prefix}{key}": value
            for prefix in ("", "producer.", "consumer.", "admin.")
            for key, value in login.items()
        }

    def environment(self) -> dict[str, str]:
        """Only what the connector configs reference, and the JVM's basics: nothing else of the caller's
        environment (its other passwords, when started by a shell that sourced .env) reaches the worker."""
        passed = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        return {**passed, **{key: self.settings.env_value(key) for key in CONNECTOR_VARIABLES}}

    def is_healthy(self) -> bool:
        try:
            response = requests.get(
                f"{self.settings.connect_url}/connector-plugins", auth=self.settings.connect_auth, timeout=2
            )
            return response.ok and any(p.get("class") == DEBEZIUM_POSTGRES for p in response.json())
        except (requests.RequestException, ValueError):
            return False

    def urls(self) -> list[str]:
        return [
            f"{self.settings.connect_url}  (Kafka Connect REST API, Debezium Postgres plugin;"
            " login CONNECT_REST_USER / CONNECT_REST_PASSWORD)"
        ]

    def _write_rest_login(self) -> None:
        """The JAAS config naming the REST login module, and its credentials file (user=password)."""
        user, password = self.settings.connect_auth
        write_private(self.credentials_file, f"{user}={password}\n")
        write_private(
            self.jaas_file,
            f'KafkaConnect {{\n  {PROPERTY_FILE_LOGIN} required\n  file="{self.credentials_file}";\n}};\n',
        )


def _java(settings: Settings, main_class: str, *args: str, jvm_options: tuple[str, ...] = ()) -> list[str]:
    """A JVM on the Kafka classpath, logging to stdout through the repo's log4j2 config."""
    java = shutil.which("java") or "/usr/bin/java"
    log_config = settings.repo_root / "setup" / "conf" / "log4j2.properties"
    classpath = f"{settings.jars_dir / 'kafka'}/*"
    return [
        java,
        *JVM_OPTIONS,
        *jvm_options,
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        classpath,
        main_class,
        *args,
    ]


def _write_properties(path: Path, values: dict[str, object]) -> None:
    """0600: the properties hold the Kafka passwords of the broker and the worker."""
    write_private(path, "# written by `make up`\n" + "".join(f"{key}={value}\n" for key, value in values.items()))
