"""The services of the local stack, in start order (each depends only on those before it)."""

from __future__ import annotations

from instashop.config import Settings
from instashop.stack.postgres import Postgres
from instashop.stack.redis_server import RedisServer
from instashop.stack.service import Service

SERVICE_CLASSES: tuple[type[Service], ...] = (
    Postgres,
    RedisServer,
)


def all_services(settings: Settings) -> list[Service]:
    return [cls(settings) for cls in SERVICE_CLASSES]
