"""POST /oauth/token under a flood: counted per address and per client before argon2 runs,
unknown client ids refused without it, addresses taken from trusted proxies only."""
from __future__ import annotations

import time

import pytest

from hub import auth


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """Every request of a test falls in one rate-limit window, even at a minute boundary
    (the argon2 verifications take long enough for a real clock to cross one)."""
    frozen = (int(time.time()) // 60) * 60 + 5
    monkeypatch.setattr(auth.time, "time", lambda: frozen)


def token(client, client_id: str, secret: str, **headers):
    return client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                             "client_secret": secret}, headers=headers)


def test_unknown_client_ids_are_refused_without_argon2(client, argon2_calls):
    for n in range(10):
        response = token(client, f"cli_made_up_{n}", "guess")
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    assert argon2_calls == []


def test_attempts_for_one_client_past_its_limit_are_429_before_argon2(app_with_limits, tenant_factory, argon2_calls):
    app = app_with_limits(token_per_client=3, token_per_address=1000)
    t = tenant_factory()
    http = app.test_client()
    assert [token(http, t.client_id, "wrong").status_code for _ in range(3)] == [401, 401, 401]
    refused = token(http, t.client_id, t.client_secret)  # even the right secret: the window is spent
    assert refused.status_code == 429
    assert refused.mimetype == "application/json"
    assert refused.get_json()["error"] == "slow_down"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "for this client" in refused.get_json()["error_description"]
    assert len(argon2_calls) == 3  # the refused attempt cost no verification
    other = tenant_factory()
    assert token(http, other.client_id, other.client_secret).status_code == 200  # other clients are unaffected


def test_requests_from_one_address_past_its_limit_are_429(app_with_limits, tenant_factory, argon2_calls):
    app = app_with_limits(token_per_client=1000, token_per_address=4)
    t = tenant_factory()
    http = app.test_client()
    assert [token(http, f"cli_x{n}", "s").status_code for n in range(4)] == [401] * 4
    refused = token(http, t.client_id, t.client_secret)
    assert refused.status_code == 429 and refused.get_json()["error"] == "slow_down"
    assert "from this address" in refused.get_json()["error_description"]
    assert argon2_calls == []
    # another address has its own count
    other = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": t.client_id,
                                            "client_secret": t.client_secret},
                      environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 200


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(app_with_limits, tenant_factory):
    t = tenant_factory()
    untrusting = app_with_limits(token_per_address=2).test_client()
    codes = [token(untrusting, t.client_id, t.client_secret, **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code
             for n in range(3)]
    assert codes == [200, 200, 429]  # a header anyone can send names nobody

    behind_one = app_with_limits(token_per_address=2, trusted_proxies="1").test_client()
    codes = [token(behind_one, t.client_id, t.client_secret, **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code
             for n in range(3)]
    assert codes == [200, 200, 200]  # three clients behind the one proxy


def test_a_successful_token_is_unchanged(client, tenant_factory, argon2_calls):
    t = tenant_factory()
    response = token(client, t.client_id, t.client_secret)
    assert response.status_code == 200 and response.get_json()["token_type"] == "Bearer"
    assert len(argon2_calls) == 1
