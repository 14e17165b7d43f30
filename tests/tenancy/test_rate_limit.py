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
