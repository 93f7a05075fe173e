"""The services of the local stack, in start order (each depends only on those before it)."""

from __future__ import annotations

from instashop.config import Settings
from instashop.stack.airflow import AirflowApiServer, AirflowDagProcessor, AirflowScheduler, AirflowTriggerer
from instashop.stack.kafka import KafkaBroker, KafkaConnect
from instashop.stack.postgres import Postgres
from instashop.stack.redis_server import RedisServer
from instashop.stack.service import Service
from instashop.stack.superset import Superset

SERVICE_CLASSES: tuple[type[Service], ...] = (
    Postgres,
    RedisServer,
    KafkaBroker,
    KafkaConnect,
    AirflowApiServer,
    AirflowScheduler,
    AirflowDagProcessor,
    AirflowTriggerer,
    Superset,
)


def all_services(settings: Settings) -> list[Service]:
    return [cls(settings) for cls in SERVICE_CLASSES]
