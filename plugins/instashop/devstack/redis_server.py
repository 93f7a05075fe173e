"""Redis 7 (Debian's redis-server): the live-metrics store, an ACL user per component, data kept on disk."""

from __future__ import annotations

import shutil

import redis

from instashop.devstack.service import Service
from instashop.settings import write_private


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
        write_private(
            self.conf_file,
            "# written by `make up`\n"
            "bind 127.0.0.1\n"
            f"port {self.port}\n"
            + "".join(f"user {name} {' '.join(rules)}\n" for name, rules in self._acl_users().items())
            + f"dir {self.data_dir}\n"
            "daemonize no\n"
            # Keep the command line (with our config path) so the pid file can be verified.
            "set-proc-title no\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            "maxmemory 1gb\n"
            # Live metrics carry TTLs; under pressure evict those first.
            "maxmemory-policy volatile-ttl\n",
        )

    def _acl_users(self) -> dict[str, list[str]]:
        """One ACL user per component, with only the keys and commands it needs.

        `default` (REDIS_URL) is the operator's: the stack's health check, the tests, clean-ups.
        Key patterns bind reads and writes alike; `-@dangerous` takes away KEYS, FLUSHDB, CONFIG,
        DEBUG and the like even where a category would grant them.
        """
        users = {
            "default": ("~* &* +@all", "REDIS_PASSWORD"),
            # The Spark app: its live:* metrics and heartbeat.
            "live_writer": (
                "resetchannels ~live:* +@read +@write +@connection -@dangerous",
                "REDIS_LIVE_WRITER_PASSWORD",
            ),
            # Superset's live adapter, Airflow's supervisor and reconciliation, `instashop spark status`.
            "live_reader": ("resetchannels ~live:* +@read +@connection -@dangerous", "REDIS_LIVE_READER_PASSWORD"),
            # Superset's caches (db 1, keys superset_*) and its rate limiter's counters (LIMITS*).
            "superset": (
                "resetchannels ~superset_* ~LIMITS* +@read +@write +@connection +select +@scripting -@dangerous",
                "REDIS_SUPERSET_PASSWORD",
            ),
        }
        return {
            name: ["reset", "on", f">{self.settings.env_value(key)}", *rules.split()]
            for name, (rules, key) in users.items()
        }

    def bootstrap(self) -> None:
        """A Redis started by an older version (or before a password change) gets the users now."""
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        for name, rules in self._acl_users().items():
            if name != "default":  # REDIS_URL is how we got in
                client.execute_command("ACL", "SETUSER", name, *rules)

    def is_healthy(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.settings.redis_url, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{self.port}  (password REDIS_PASSWORD in .env)"]
