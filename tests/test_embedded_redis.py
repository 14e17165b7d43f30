"""The hub's own Redis server: a real redis-server, shared, stopped cleanly."""
from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from hub.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server


def test_starts_on_a_unix_socket_and_is_shared(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    try:
        url = server.ensure_running()
        assert url.startswith("unix://")
        assert redis.Redis.from_url(url).ping()
        other = EmbeddedRedis(tmp_path / "redis", persist=False)  # another process's view
        assert other.ensure_running() == url and not other.started_here
        assert server.pid() is not None
    finally:
        assert server.stop() is True
    assert server.url() is None
    assert not _alive(server)


def test_falls_back_to_a_free_port_never_6379_when_the_socket_path_is_too_long(tmp_path):
    deep = tmp_path / ("d" * 90) / "redis"
    server = EmbeddedRedis(deep, persist=False)
    try:
        url = server.ensure_running()
        assert url.startswith("redis://127.0.0.1:") and ":6379/" not in url
        assert redis.Redis.from_url(url).ping()
    finally:
        server.stop()


def test_a_killed_server_on_a_port_comes_back_on_the_same_port(tmp_path):
    # The hub's processes were given its URL (ROP_REDIS_URL): a restart must keep it.
    server = EmbeddedRedis(tmp_path / ("d" * 90) / "redis")
    try:
        url = server.ensure_running()
        pid = server.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.url() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.url() is None
        assert server.ensure_running() == url
        assert server.pid() != pid and redis.Redis.from_url(url).ping()
    finally:
        server.stop()


def test_stop_when_not_running_says_so(tmp_path):
    assert EmbeddedRedis(tmp_path / "redis").stop() is False


def test_a_missing_binary_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("ROP_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(EmbeddedRedisError) as info:
        find_redis_server()
    assert "\n" not in str(info.value) and "ROP_REDIS_SERVER" in str(info.value)


def _alive(server: EmbeddedRedis) -> bool:
    pid = server.pid()
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
