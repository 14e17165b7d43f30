"""Per-client rate limits, counted in the real Redis."""
from __future__ import annotations

import time

import hub.auth as auth


def test_the_request_past_the_limit_gets_429_with_retry_after_and_others_are_unaffected(client, tenant_factory, monkeypatch):
    # Keep all requests inside one window even at a minute boundary.
    frozen = (int(time.time()) // 60) * 60 + 5
    monkeypatch.setattr(auth.time, "time", lambda: frozen)
    limited = tenant_factory(rate_limit_per_minute=3)
    other = tenant_factory(rate_limit_per_minute=3)
    statuses = [client.get("/v1/tenant", headers=limited.headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/v1/tenant", headers=limited.headers)
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert client.get("/v1/tenant", headers=other.headers).status_code == 200


def test_the_next_window_lets_the_client_in_again(client, tenant_factory, monkeypatch):
    now = [(int(time.time()) // 60) * 60 + 5]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    t = tenant_factory(rate_limit_per_minute=1)
    assert client.get("/v1/tenant", headers=t.headers).status_code == 200
    assert client.get("/v1/tenant", headers=t.headers).status_code == 429
    now[0] += 60
    assert client.get("/v1/tenant", headers=t.headers).status_code == 200


def test_catalog_reads_count_against_the_same_limit_in_their_cache_lookup(client, tenant_factory, monkeypatch):
    """/v1/products counts the request inside its Redis cache look-up (one round trip);
    it is the same counter as every other call of the client."""
    frozen = (int(time.time()) // 60) * 60 + 5
    monkeypatch.setattr(auth.time, "time", lambda: frozen)
    t = tenant_factory(rate_limit_per_minute=4)
    assert client.get("/v1/products", headers=t.headers).status_code == 200
    assert client.get("/v1/products?category=pulsa", headers=t.headers).status_code == 200
    assert client.get("/v1/products/NO-SUCH-CODE", headers=t.headers).status_code == 404  # counted too
    assert client.get("/v1/tenant", headers=t.headers).status_code == 200
    for path in ("/v1/products", "/v1/products/NO-SUCH-CODE", "/v1/tenant"):
        response = client.get(path, headers=t.headers)
        assert response.status_code == 429, path
        assert response.mimetype == "application/problem+json"
        assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_view_that_leaves_its_count_untaken_is_counted_when_it_returns(app, tenant_factory, monkeypatch):
    from hub.errors import RateLimited

    frozen = (int(time.time()) // 60) * 60 + 5
    monkeypatch.setattr(auth.time, "time", lambda: frozen)
    t = tenant_factory(rate_limit_per_minute=2)
    calls = []

    @auth.requires("tenant:read", count_in_view=True)
    def forgetful_view():
        calls.append(1)
        return "ok"

    for _ in range(2):
        with app.test_request_context("/x", headers=t.headers):
            assert forgetful_view() == "ok"
    with app.test_request_context("/x", headers=t.headers):
        try:
            forgetful_view()
        except RateLimited:
            pass
        else:
            raise AssertionError("the third call of a 2-per-minute client was not limited")
    assert len(calls) == 3  # counted after the view: it ran, and its answer was replaced by 429
