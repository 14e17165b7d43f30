"""hub.cache against the suite's real Redis: entries by version, the bump after a commit,
the TTL backstop and the versions' reading (one MGET serves the process for REFRESH seconds)
on injectable clocks."""
from __future__ import annotations

import pytest

from hub.cache import NAMESPACES, REFRESH, WATCHED, RefCache, refcache, version_key
from hub.db import unit_of_work


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two(app):
    """Two caches on the same Redis (two processes), each on its own clock (entries expire
    and readings of the versions age by it)."""
    redis = app.extensions["rop"].redis
    clocks = Clock(), Clock()
    return tuple(RefCache(lambda: redis, 5.0, clock=c, refresh_clock=c) for c in clocks), clocks


def test_an_entry_is_loaded_once_per_version_and_a_bump_elsewhere_reloads_it(app, two):
    (mine, theirs), clocks = two
    source = {"price": 100}
    loads = []

    def load():
        loads.append(1)
        return dict(source)

    with app.test_request_context():
        assert mine.get("products", "TEL10", load) == {"price": 100}
    with app.test_request_context():
        assert mine.get("products", "TEL10", load) == {"price": 100}
    assert len(loads) == 1
    source["price"] = 200
    theirs.bump_now("products")  # another process committed a change
    with app.test_request_context():  # this process read the versions less than REFRESH ago
        assert mine.get("products", "TEL10", load) == {"price": 100}
    clocks[0].now += REFRESH + 0.001
    with app.test_request_context():  # its reading is REFRESH old: read again, the entry reloaded
        assert mine.get("products", "TEL10", load) == {"price": 200}
    assert len(loads) == 2
    theirs.bump_now("webhooks")  # another namespace: this entry stays
    clocks[0].now += REFRESH + 0.001
    with app.test_request_context():
        assert mine.get("products", "TEL10", load) == {"price": 200}
    assert len(loads) == 2
    source["price"] = 300
    mine.bump_now("products")  # this process's own change: seen at once
    with app.test_request_context():
        assert mine.get("products", "TEL10", load) == {"price": 300}


def test_a_request_keeps_its_reading_and_one_reading_serves_the_process_for_refresh_seconds(app, two):
    (mine, theirs), (clock, _other) = two
    with app.test_request_context():
        assert mine.get("providers", "t1", lambda: ("a",)) == ("a",)
        theirs.bump_now("providers")
        clock.now += REFRESH + 0.001
        # the same request keeps what it read, however long it runs
        assert mine.get("providers", "t1", lambda: ("b",)) == ("a",)
    with app.test_request_context():  # a new request, the process's reading REFRESH old
        assert mine.get("providers", "t1", lambda: ("b",)) == ("b",)


def test_the_versions_and_the_keys_read_with_them_cost_one_mget_per_refresh(app, two, monkeypatch):
    """Across requests and threads of a process: one MGET (the versions and, say, a tenant's
    breakers) per REFRESH seconds; other keys asked meanwhile are read on their own, once."""
    import threading

    (mine, _theirs), (clock, _other) = two
    redis = app.extensions["rop"].redis
    sent = []
    real_mget = redis.mget
    monkeypatch.setattr(redis, "mget", lambda keys: sent.append(list(keys)) or real_mget(keys))
    redis.set("rop:test:breaker:a", "1")

    def read(extra):
        with app.test_request_context():
            return mine.versions(extra)[1]

    threads = [threading.Thread(target=read, args=(["rop:test:breaker:a"],)) for _ in range(4)]
    assert read(["rop:test:breaker:a"]) == [b"1"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read([]) == []
    assert sent == [[*(version_key(ns) for ns in NAMESPACES), *WATCHED.values(), "rop:test:breaker:a"]]
    assert read(["rop:test:breaker:b"]) == [None]  # other keys: read once, without the versions
    assert read(["rop:test:breaker:b"]) == [None]
    assert sent[1:] == [["rop:test:breaker:b"]]
    redis.set("rop:test:breaker:a", "2")
    assert read(["rop:test:breaker:a"]) == [b"1"]  # within REFRESH: as read
    clock.now += REFRESH + 0.001
    assert read(["rop:test:breaker:a"]) == [b"2"]
    assert len(sent) == 3
    mine.refresh()  # a newer version seen elsewhere: everything is read again
    assert read(["rop:test:breaker:b"]) == [None] and len(sent) == 4


def test_a_reading_answered_before_a_bump_of_this_process_is_not_kept_after_it(app, two, monkeypatch):
    """A thread's MGET answered before this process's own bump (or a refresh), kept after
    it, would hide the bump from every thread for REFRESH seconds: it is not kept for the
    process (the request that asked still uses it)."""
    (mine, _theirs), _clocks = two
    redis = app.extensions["rop"].redis
    real_mget, bumped = redis.mget, []

    def mget_then_bump(keys):
        answer = real_mget(keys)  # answered under the old versions...
        if not bumped:
            bumped.append(1)
            mine.bump_now("products")  # ...and another thread bumps before it is kept
        return answer

    monkeypatch.setattr(redis, "mget", mget_then_bump)
    with app.test_request_context():
        assert mine.get("products", "k", lambda: "old") == "old"
    with app.test_request_context():  # the clock stands still: only a dropped reading reads again
        assert mine.get("products", "k", lambda: "new") == "new"
    assert mine.versions()[0]["products"] == real_mget([version_key("products")])[0]


def test_a_lost_bump_is_healed_by_the_ttl(app, two):
    (mine, _theirs), (clock, _other) = two
    value = ["old"]
    with app.test_request_context():
        assert mine.get("products", "k", lambda: value[0]) == "old"
    value[0] = "new"  # changed, no bump
    clock.now += 4.9
    with app.test_request_context():
        assert mine.get("products", "k", lambda: value[0]) == "old"
    clock.now += 0.1
    with app.test_request_context():
        assert mine.get("products", "k", lambda: value[0]) == "new"


def test_a_bump_registered_on_a_unit_of_work_happens_after_its_commit_only(app, two):
    (mine, _theirs), _clocks = two
    redis = app.extensions["rop"].redis
    db = app.extensions["rop"].db
    with unit_of_work(db) as uow:
        mine.bump(uow, "providers")
        uow.rollback()
    assert redis.get(version_key("providers")) is None
    with unit_of_work(db) as uow:
        mine.bump(uow, "providers", "webhooks")
        assert redis.get(version_key("providers")) is None
        uow.commit()
    assert (redis.get(version_key("providers")), redis.get(version_key("webhooks"))) == (b"1", b"1")


def test_many_keys_are_loaded_in_one_call_and_misses_are_kept(app, two):
    (mine, _theirs), _clocks = two
    calls = []

    def load(keys):
        calls.append(list(keys))
        return {k: k.upper() for k in keys if k != "nope"}

    with app.test_request_context():
        assert mine.get_many("products", ["a", "b", "nope"], load) == {"a": "A", "b": "B", "nope": None}
        assert mine.get_many("products", ["a", "c", "nope"], load) == {"a": "A", "c": "C", "nope": None}
    assert calls == [["a", "b", "nope"], ["c"]]


def test_ttl_0_is_no_cache_and_unknown_namespaces_are_refused(app):
    redis = app.extensions["rop"].redis
    off = RefCache(lambda: redis, 0)
    loads = []
    with app.test_request_context():
        for _ in range(2):
            off.get("products", "k", lambda: loads.append(1))
    assert len(loads) == 2
    with pytest.raises(ValueError, match="unknown cache namespace"):
        off.bump_now("catalogue")


def test_the_app_has_one_cache_with_the_configured_ttl(app):
    with app.app_context():
        assert refcache() is refcache(app)
        assert refcache().ttl == app.extensions["rop"].config.cache_ttl
    assert set(NAMESPACES) == {"products", "providers", "webhooks"}
