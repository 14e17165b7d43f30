"""The OpenAPI document describes every response the hub gives: each answer below is checked
against the operation's documented status and schema by schemathesis's own validator (the one
``make fuzz`` runs)."""
from __future__ import annotations

import json
import time

import pytest

from hub import auth

schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture
def one_window(monkeypatch):
    """The requests of a test fall in one rate-limit window, even at a minute boundary."""
    frozen = (int(time.time()) // 60) * 60 + 5
    monkeypatch.setattr(auth.time, "time", lambda: frozen)


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").get_json()


@pytest.fixture
def conforms(spec):
    """``conforms(path, method, response)``: the status is documented for the operation, and
    the body is what the spec says for it (schemathesis's response_schema_conformance)."""
    schema = schemathesis.openapi.from_dict(spec)

    def check(path: str, method: str, response) -> None:
        documented = spec["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in documented, (path, method, response.status_code, sorted(documented))
        content = resolve(spec, documented[str(response.status_code)]).get("content", {})
        if content:
            assert response.mimetype in content, (response.mimetype, sorted(content))
        schema[path][method.upper()].validate_response(response)

    return check


def resolve(spec: dict, item: dict) -> dict:
    while "$ref" in item:
        node = spec
        for part in item["$ref"].lstrip("#/").split("/"):
            node = node[part]
        item = node
    return item


def test_every_operation_documents_its_errors_as_problem_json(spec):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert "503" in responses and "default" in responses, (method, path)
            if operation.get("security"):
                assert {"401", "403", "429"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if method in ("post", "put"):
                assert "413" in responses, (method, path)
            for code, response in responses.items():
                if code.startswith(("4", "5")) or code == "default":
                    oauth = path == "/oauth/token" and code != "default"  # RFC 6749 bodies
                    media = "application/json" if oauth else "application/problem+json"
                    assert list(resolve(spec, response).get("content", {})) == [media], (method, path, code)


def test_errors_of_the_edge_and_of_authentication_conform(client, tenant_factory, conforms, app_with_limits,
                                                          one_window):
    t = tenant_factory()
    conforms("/v1/transactions", "GET", client.get("/v1/transactions"))  # 401
    conforms("/v1/transactions", "GET", client.get("/v1/transactions?ref_id=%00", headers=t.headers))  # 422
    conforms("/v1/transactions", "POST", client.post("/v1/transactions", data=b"{", headers=t.headers,
                                                      content_type="application/json"))  # 400
    conforms("/v1/transactions/{transaction_id}", "GET", client.get("/v1/transactions/x%00", headers=t.headers))
    conforms("/v1/events", "GET", client.get("/v1/events?after=99999999999999999999", headers=t.headers))
    narrow = tenant_factory(scopes=["products:read"])
    conforms("/v1/wallets", "GET", client.get("/v1/wallets", headers=narrow.headers))  # 403
    small = app_with_limits(body_json=100).test_client()
    conforms("/v1/transactions", "POST", small.post("/v1/transactions", json={"ref_id": "x" * 200},
                                                    headers=t.headers))  # 413
    limited = tenant_factory(rate_limit_per_minute=1)
    client.get("/v1/tenant", headers=limited.headers)
    conforms("/v1/tenant", "GET", client.get("/v1/tenant", headers=limited.headers))  # 429


def test_the_token_endpoints_rfc_6749_errors_conform(client, tenant_factory, conforms, app_with_limits, one_window):
    t = tenant_factory()
    form = {"grant_type": "client_credentials", "client_id": t.client_id, "client_secret": t.client_secret}
    conforms("/oauth/token", "POST", client.post("/oauth/token", data={**form, "grant_type": "password"}))  # 400
    conforms("/oauth/token", "POST", client.post("/oauth/token", data={**form, "client_id": "a\u0000"}))  # 400
    conforms("/oauth/token", "POST", client.post("/oauth/token", data={**form, "client_secret": "no"}))  # 401
    conforms("/oauth/token", "POST", client.post("/oauth/token", data=form))  # 200
    limited = app_with_limits(token_per_address=1, body_json=2000).test_client()
    limited.post("/oauth/token", data=form)
    conforms("/oauth/token", "POST", limited.post("/oauth/token", data=form))  # 429
    conforms("/oauth/token", "POST", limited.post("/oauth/token", data={**form, "scope": "x" * 3000}))  # 413


def test_a_bulk_replay_and_a_callback_conform(client, tenant_factory, conforms):
    t = tenant_factory(scopes=["bulk:write", "bulk:read"])
    rows = b"ref_id,product_code,customer_no\nr1,TEL10,081234567890\n"
    first = client.post("/v1/bulk", data=rows, headers=t.headers, content_type="text/csv")
    conforms("/v1/bulk", "POST", first)  # 202
    again = client.post("/v1/bulk", data=rows, headers=t.headers, content_type="text/csv")
    assert again.status_code == 200
    conforms("/v1/bulk", "POST", again)  # 200: the replay
    conforms("/callbacks/{provider_code}/{config_id}", "POST",
             client.post("/callbacks/sandbox/pcf_none", data=json.dumps({"a": 1}), content_type="application/json"))
    conforms("/callbacks/{provider_code}/{config_id}", "POST",
             client.post("/callbacks/sandbox/pcf_none", data=b"x" * 70_000, content_type="text/plain"))  # 413
