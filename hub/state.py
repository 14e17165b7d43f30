"""The per-app state of the hub: configuration, database, Redis, and how to reach them.

One :class:`HubState` lives in ``app.extensions["rop"]``; it is built by the app factory
(never at import time) and reached through :func:`current_state`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from flask import current_app

from hub.config import Config
from hub.db import Database
from hub.embedded_redis import EmbeddedRedis

log = structlog.get_logger("hub.state")


def resolve_redis_url(config: Config) -> tuple[str, str]:
    """Return (url, origin): the configured Redis, or the hub's embedded one (started if needed).

    When this call started the embedded server, ``EMBEDDED_STARTED_HERE`` holds it, so a
    one-shot command can stop what it started.
    """
    embedded = EmbeddedRedis(config.instance_path / "redis")
    if config.redis_url:
        # `rop up` hands its children the embedded server's URL: say so in their logs.
        try:
            if embedded.url_file.read_text().strip() == config.redis_url:
                return config.redis_url, "embedded"
        except FileNotFoundError:
            pass
        return config.redis_url, "ROP_REDIS_URL"
    url = embedded.ensure_running()
    if embedded.started_here:
        EMBEDDED_STARTED_HERE.append(embedded)
    return url, "embedded"


#: Embedded Redis servers this process started (see :func:`resolve_redis_url`).
EMBEDDED_STARTED_HERE: list[EmbeddedRedis] = []


@dataclass
class HubState:
    """Everything an app of the hub shares across requests."""

    config: Config
    db: Database
    redis_url: str
    redis_origin: str
    extras: dict[str, Any] = field(default_factory=dict)
    _redis: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        """A Redis client (connection-pooled) for this app; RQ needs raw bytes, so no decoding."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.redis_url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30
            )
        return self._redis

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        self.db.dispose()


def current_state() -> HubState:
    """The :class:`HubState` of the current Flask app."""
    return current_app.extensions["rop"]
