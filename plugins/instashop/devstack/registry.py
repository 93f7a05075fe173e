"""The services of the local stack, in start order (each depends only on those before it)."""

from __future__ import annotations

from instashop.devstack.airflow import AirflowApiServer, AirflowDagProcessor, AirflowScheduler, AirflowTriggerer
from instashop.devstack.kafka import KafkaBroker, KafkaConnect
from instashop.devstack.postgres import ShopPostgres, WarehousePostgres
from instashop.devstack.redis_server import RedisServer
from instashop.devstack.service import Service
from instashop.devstack.superset import Superset
from instashop.settings import Settings

SERVICE_CLASSES: tuple[type[Service], ...] = (
    ShopPostgres,
    WarehousePostgres,
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
