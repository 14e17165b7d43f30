"""HotScript against the suite's real Redis: replies, a forgotten script, a dropped
connection, a script error."""
from __future__ import annotations

import uuid

import pytest
import redis
from redis.exceptions import ResponseError

from hub.redis_scripts import HotScript, hot_script

COUNT = "local n = redis.call('incr', KEYS[1]) return {n, ARGV[1]}"


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_it_answers_like_the_script_and_loads_it_when_the_server_has_forgotten_it(client):
    key = f"test:hot:{uuid.uuid4().hex}"
    script = HotScript(client, COUNT)
    assert script(keys=[key], args=["a"]) == [1, b"a"]
    client.script_flush()  # as after a restart without persistence
    assert script(keys=[key], args=["b"]) == [2, b"b"]
    assert client.script_exists(script.sha) == [True]


def test_a_dropped_connection_is_replaced_and_the_call_made_again(client, redis_url):
    key = f"test:hot:{uuid.uuid4().hex}"
    script = HotScript(client, COUNT)
    assert script(keys=[key], args=["x"])[0] == 1
    conn = client.connection_pool.get_connection()  # the pooled connection the script used
    conn.send_command("CLIENT", "ID")
    conn_id = conn.read_response()
    client.connection_pool.release(conn)
    with redis.Redis.from_url(redis_url) as killer:  # drop exactly that connection, server-side
        assert killer.client_kill_filter(_id=conn_id) == 1
    assert script(keys=[key], args=["y"]) == [2, b"y"]


def test_a_script_error_is_raised_and_the_connection_stays_usable(client):
    script = HotScript(client, "return redis.error_reply('no such thing')")
    with pytest.raises(ResponseError, match="no such thing"):
        script()
    assert client.ping() is True
    assert HotScript(client, "return 7")() == 7


def test_hot_script_makes_one_per_client_and_source(client, redis_url):
    script = hot_script(client, "return 1")
    assert hot_script(client, "return 1") is script and script(keys=[], args=[]) == 1
    assert hot_script(client, "return 2") is not script
    other = redis.Redis.from_url(redis_url)
    try:
        assert hot_script(other, "return 1") is not script and hot_script(other, "return 1").client is other
    finally:
        other.close()
