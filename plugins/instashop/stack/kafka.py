"""Kafka 4 (KRaft) and a Kafka Connect worker with Debezium, run from the Maven-resolved jars in .jars/.

One broker in combined mode (broker and controller in one JVM) keeps the topics under var/kafka; one
distributed Connect worker keeps connector configs, offsets and status in Kafka topics and loads the
Debezium Postgres plugin, isolated, from .jars/connect-plugins.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import requests
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from instashop.config import Settings
from instashop.stack.service import Service

DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
# Small heaps for a dev box; on OutOfMemoryError the JVM exits rather than limp on half-broken.
JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+ExitOnOutOfMemoryError")


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
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://{controller}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
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

    def is_healthy(self) -> bool:
        try:
            # log_level 0: no librdkafka "connection refused" lines while the broker starts.
            admin = AdminClient({"bootstrap.servers": self.settings["KAFKA_BOOTSTRAP"], "log_level": 0})
            return bool(admin.list_topics(timeout=2).brokers)
        except KafkaException:
            return False

    def urls(self) -> list[str]:
        return [f"{self.settings['KAFKA_BOOTSTRAP']}  (Kafka bootstrap, KAFKA_BOOTSTRAP in .env)"]

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

    def command(self) -> list[str]:
        return _java(self.settings, "org.apache.kafka.connect.cli.ConnectDistributed", str(self.conf_file))

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _write_properties(
            self.conf_file,
            {
                "bootstrap.servers": self.settings["KAFKA_BOOTSTRAP"],
                "group.id": "instashop-connect",
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
                # Connector configs reference secrets as ${env:NAME}: resolved here, never shown by REST.
                "config.providers": "env",
                "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
                # Connectors may tune their own producers (Debezium's linger and batch size).
                "connector.client.config.override.policy": "All",
            },
        )

    def environment(self) -> dict[str, str]:
        # What the connector configs may reference through the env config provider.
        exposed = ("POSTGRES_PORT", "DEBEZIUM_PASSWORD", "DWH_WRITER_PASSWORD")
        return {**os.environ, **{key: self.settings[key] for key in exposed}}

    def is_healthy(self) -> bool:
        try:
            response = requests.get(f"{self.settings['CONNECT_URL']}/connector-plugins", timeout=2)
            return response.ok and any(p.get("class") == DEBEZIUM_POSTGRES for p in response.json())
        except (requests.RequestException, ValueError):
            return False

    def urls(self) -> list[str]:
        return [f"{self.settings['CONNECT_URL']}  (Kafka Connect REST API, Debezium Postgres plugin)"]


def _java(settings: Settings, main_class: str, *args: str) -> list[str]:
    """A JVM on the Kafka classpath, logging to stdout through the repo's log4j2 config."""
    java = shutil.which("java") or "/usr/bin/java"
    log_config = settings.repo_root / "stack" / "conf" / "log4j2.properties"
    classpath = f"{settings.jars_dir / 'kafka'}/*"
    return [
        java,
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        classpath,
        main_class,
        *args,
    ]


def _write_properties(path: Path, values: dict[str, object]) -> None:
    path.write_text("# written by `make up`\n" + "".join(f"{key}={value}\n" for key, value in values.items()))
