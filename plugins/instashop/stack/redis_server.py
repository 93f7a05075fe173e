"""Redis 7 (Debian's redis-server): the live-metrics store, password-protected, data kept on disk."""

from __future__ import annotations

import shutil

import redis

from instashop.stack.service import Service


class RedisServer(Service):
    name = "redis"
    port_key = "redis"
    health_timeout = 20.0

    @property
    def conf_file(self):
        return self.data_dir / "redis.conf"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [binary, str(self.conf_file)]

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Written on every start so a port or password change in .env takes effect.
        self.conf_file.write_text(
            "# written by `make up`\n"
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            f"requirepass {self.settings['REDIS_PASSWORD']}\n"
            f"dir {self.data_dir}\n"
            "daemonize no\n"
            # Keep the command line (with our config path) so the pid file can be verified.
            "set-proc-title no\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            "maxmemory 1gb\n"
            # Live metrics carry TTLs; under pressure evict those first.
            "maxmemory-policy volatile-ttl\n"
        )
        self.conf_file.chmod(0o600)

    def is_healthy(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.settings["REDIS_URL"], socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{self.port}  (password REDIS_PASSWORD in .env)"]
