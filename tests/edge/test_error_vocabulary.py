"""One error vocabulary: one title per status whoever refuses the request, a ``detail`` that
helps, and a hint when a body is not sent as JSON."""
from __future__ import annotations

import json

from hub.errors import TITLES

PROBLEM = "application/problem+json"
PURCHASE = {"ref_id": "v-1", "product_code": "TEL10", "customer_no": "081200001234"}


def _problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["title"] == TITLES[status] and body["status"] == status
    return body


def test_a_422_has_one_title_whoever_found_the_problem(client, tenant_factory):
    tenant = tenant_factory()
    by_schema = _problem(client.post("/v1/transactions", json={"ref_id": "v-1"}, headers=tenant.headers), 422)
    by_query = _problem(client.get("/v1/transactions?limit=abc", headers=tenant.headers), 422)
    by_service = _problem(client.post("/v1/transactions", json=dict(PURCHASE, product_code="NOPE"),
                                      headers=tenant.headers), 422)
    assert by_schema["title"] == by_query["title"] == by_service["title"] == "The request is not valid"
    # the detail says which fields and what is wrong, not "One or more fields are not valid."
    assert by_schema["detail"].startswith("customer_no: Missing data for required field.")
    assert "product_code" in by_schema["detail"] and set(by_schema["errors"]) == {"customer_no", "product_code"}
    assert by_query["detail"] == "limit: Not a valid integer."
    assert "NOPE" in by_service["detail"]


def test_werkzeugs_own_errors_use_the_same_titles(client, tenant_factory):
    tenant = tenant_factory()
    not_allowed = _problem(client.delete("/v1/transactions", headers=tenant.headers), 405)
    assert "Allow" in client.delete("/v1/transactions", headers=tenant.headers).headers
    assert not_allowed["title"] == "Method not allowed"
    _problem(client.get("/v1/nowhere", headers=tenant.headers), 404)


def test_malformed_json_says_so(client, tenant_factory):
    tenant = tenant_factory()
    body = _problem(client.post("/v1/transactions", data='{"ref_id": "v-1",', content_type="application/json",
                                headers=tenant.headers), 400)
    assert body["detail"].startswith("the body is not valid JSON") and "browser" not in body["detail"]


def test_a_body_without_its_content_type_gets_a_hint(client, tenant_factory):
    tenant = tenant_factory()
    raw = json.dumps(PURCHASE)
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):  # curl -d sends a form
        response = client.post("/v1/transactions", data=raw, content_type=content_type, headers=tenant.headers)
        body = _problem(response, 415)
        assert "Content-Type: application/json" in body["detail"]
        assert body["errors"] == {"Content-Type": ["expected application/json"]}  # not three "Missing data"
    empty = _problem(client.post("/v1/transactions", data="", content_type="application/json",
                                 headers=tenant.headers), 422)
    assert empty["detail"].startswith("the body is empty")
    # nothing was bought meanwhile
    assert client.get("/v1/transactions", headers=tenant.headers).get_json()["items"] == []
