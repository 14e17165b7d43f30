"""Fixtures of the outage tests: a Redis server of the test's own, which the test stops and
starts again (the suite's shared Redis stays up for every other test)."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from hub.config import Config
from hub.embedded_redis import EmbeddedRedis, free_port


class OwnRedis:
    """A real ``redis-server`` on a fixed free port: :meth:`stop` it, :meth:`start` it again
    (same port, same URL, empty: no persistence)."""

    def __init__(self, directory):
        self.server = EmbeddedRedis(directory, persist=False, port=free_port())
        self.url = self.server.ensure_running()

    def stop(self) -> None:
        assert self.server.stop(), "the test's Redis was not running"

    def start(self) -> None:
        assert self.server.ensure_running() == self.url


@pytest.fixture
def own_redis(tmp_path):
    redis = OwnRedis(tmp_path / "own-redis")
    yield redis
    redis.server.stop()


@pytest.fixture
def config(database_url, own_redis, instance_path) -> Config:
    """The suite's configuration, on the test's own Redis (``app``, ``client`` and
    ``tenant_factory`` follow)."""
    return Config.from_env(
        {}, instance_path=instance_path, database_url=database_url, redis_url=own_redis.url,
        webhook_allow_private=True, testing=True, log_format="console", log_level="CRITICAL",
    )


def metric(name: str, **labels) -> float:
    """A counter's value in this process (0 when never counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
