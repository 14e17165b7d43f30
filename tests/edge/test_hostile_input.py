"""Hostile input at the edge: text no database column can hold, integers past 64 bits,
dates past what Python holds, JSON nested without end. Each answers a 4xx naming the field,
never a 500 (these were 500s on PostgreSQL, most on SQLite too)."""
from __future__ import annotations

import json

import pytest

from hub.db import unit_of_work


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json(force=True)


def post_json(client, path: str, text: str, headers: dict):
    """POST ``text`` as it is (a JSON document the test client would not make: lone surrogates)."""
    return client.post(path, data=text.encode(), headers=headers, content_type="application/json")


def purchase(**changes) -> dict:
    return {"ref_id": "r-1", "product_code": "TEL10", "customer_no": "081234567890", **changes}


@pytest.mark.parametrize("field", ["ref_id", "product_code", "customer_no", "wallet_id"])
def test_a_nul_character_in_a_json_field_is_422_naming_the_field(client, funded, field):
    response = client.post("/v1/transactions", json=purchase(**{field: "081\u00002"}), headers=funded.tenant.headers)
    body = problem(response, 422)
    assert body["errors"] == {field: ["contains a NUL character"]}


def test_a_lone_surrogate_in_a_json_string_or_key_is_422(client, funded):
    text = json.dumps(purchase()).replace('"r-1"', '"r-\\ud800"')
    body = problem(post_json(client, "/v1/transactions", text, funded.tenant.headers), 422)
    assert body["errors"] == {"ref_id": ["contains a lone surrogate (not Unicode text)"]}
    text = '{"ref\\u0000id": "r", "product_code": "TEL10", "customer_no": "0812"}'
    body = problem(post_json(client, "/v1/transactions", text, funded.tenant.headers), 422)
    assert body["errors"] == {"ref\\u0000id": ["the name contains a NUL character"]}


def test_nothing_was_written_for_a_refused_body(app, client, funded):
    from hub.transactions.models import Transaction

    client.post("/v1/transactions", json=purchase(customer_no="0\u0000"), headers=funded.tenant.headers)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.query(Transaction).count() == 0


@pytest.mark.parametrize("path", ["/v1/transactions/trx%00", "/v1/wallets/wal_%00x/entries", "/v1/bulk/blk%00",
                                  "/v1/products/TEL%00", "/v1/clients/cli_%00"])
def test_a_nul_in_a_path_id_is_404(client, funded, path):
    body = problem(client.get(path, headers=funded.tenant.headers), 404)
    assert "NUL" in body["detail"]


@pytest.mark.parametrize("path, param", [
    ("/v1/transactions?ref_id=a%00b", "ref_id"),
    ("/v1/transactions?customer_no=%00", "customer_no"),
    ("/v1/bulk?cursor=%C3%A3%00", "cursor"),
    ("/v1/webhook/deliveries?cursor=x%00", "cursor"),
    ("/v1/products?q=pulsa%00", "q"),
    ("/v1/wallets?cursor=%00&limit=5", "cursor"),
    ("/v1/events?type=a%00", "type"),
    ("/v1/transactions?x%00y=1", "x\\u0000y"),
])
def test_a_nul_in_a_query_parameter_is_422_naming_it(client, funded, path, param):
    body = problem(client.get(path, headers=funded.tenant.headers), 422)
    assert param in body["errors"], body


def test_an_anonymous_request_with_a_nul_query_is_still_401_first(client):
    assert client.get("/v1/transactions?ref_id=%00").status_code == 401


@pytest.mark.parametrize("path, param", [
    ("/v1/events?after=99999999999999999999", "after"),
    ("/v1/events?after=9223372036854775808", "after"),
    ("/v1/bulk/blk_x/items?cursor=157388414074", "cursor"),
])
def test_integers_past_what_the_database_stores_are_422(client, funded, path, param):
    body = problem(client.get(path, headers=funded.tenant.headers), 422)
    assert param in body["errors"], body


def test_the_largest_64_bit_cursor_is_fine(client, funded):
    assert client.get("/v1/events?after=9223372036854775807", headers=funded.tenant.headers).status_code == 200


@pytest.mark.parametrize("amount", [2**63, 10**30, -(2**63) - 1, 1e300])
def test_an_amount_past_64_bits_is_422(client, funded, amount):
    transfer = {"from_wallet_id": funded.wallet_id, "to_wallet_id": funded.wallet_id, "amount": amount,
                "ref_id": "t-1"}
    response = client.post("/v1/transfers", json=transfer, headers=funded.tenant.headers)
    body = problem(response, 422)
    assert "amount" in body["errors"]


def test_nan_and_infinity_are_not_json(client, funded):
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        text = f'{{"from_wallet_id": "{funded.wallet_id}", "to_wallet_id": "w", "amount": {literal}, "ref_id": "t"}}'
        body = problem(post_json(client, "/v1/transfers", text, funded.tenant.headers), 400)
        assert body["errors"] == {"body": ["not valid JSON"]}


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z"])
def test_dates_past_what_python_and_the_database_hold_are_422(client, funded, value):
    response = client.get("/v1/transactions", query_string={"created_from": value}, headers=funded.tenant.headers)
    body = problem(response, 422)
    assert "created_from" in body["errors"]


def test_an_ordinary_date_range_still_works(client, funded):
    response = client.get("/v1/transactions", query_string={"created_from": "2020-01-01T00:00:00+07:00",
                                                            "created_to": "2999-01-01T00:00:00Z"},
                          headers=funded.tenant.headers)
    assert response.status_code == 200


@pytest.mark.parametrize("depth", [33, 5000, 200_000])
def test_json_nested_deeper_than_32_is_422_never_a_recursion_error(client, funded, depth):
    text = '{"ref_id": ' + "[" * depth + "]" * depth + "}"
    body = problem(post_json(client, "/v1/transactions", text, funded.tenant.headers), 422)
    assert "nested deeper than 32" in json.dumps(body["errors"])


def test_json_nested_32_deep_reaches_the_schema(client, funded):
    text = '{"ref_id": ' + "[" * 31 + "]" * 31 + "}"
    body = problem(post_json(client, "/v1/transactions", text, funded.tenant.headers), 422)
    assert body["errors"]["ref_id"] == ["Not a valid string."]


def test_malformed_json_is_400(client, funded):
    body = problem(post_json(client, "/v1/transactions", '{"ref_id": ', funded.tenant.headers), 400)
    assert body["errors"] == {"body": ["not valid JSON"]}


@pytest.mark.parametrize("file_name, form, errors", [
    ("rows.csv", {"reference": "ref\u0000"}, {"reference": ["contains a NUL character"]}),
    ("ro\u0000ws.csv", {}, {"file": ["the file name contains a NUL character"]}),
])
def test_a_nul_in_a_multipart_form_field_or_file_name_is_422(client, funded, file_name, form, errors):
    import io

    data = {"file": (io.BytesIO(b"ref_id,product_code,customer_no\nr1,TEL10,0812\n"), file_name), **form}
    body = problem(client.post("/v1/bulk", data=data, headers=funded.tenant.headers,
                               content_type="multipart/form-data"), 422)
    assert body["errors"] == errors


def test_bulk_options_with_a_nul_are_422(client, funded):
    rows = b"ref_id,product_code,customer_no\nr1,TEL10,0812\n"
    body = problem(client.post("/v1/bulk?reference=a%00", data=rows, headers=funded.tenant.headers,
                               content_type="text/csv"), 422)
    assert "reference" in body["errors"]
    items = json.dumps({"reference": "a\u0000", "items": [purchase()]}).encode()
    body = problem(client.post("/v1/bulk", data=items, headers=funded.tenant.headers,
                               content_type="application/json"), 422)
    assert body["errors"] == {"reference": ["contains a NUL character"]}


def test_a_bulk_file_naming_a_wallet_the_tenant_does_not_have_is_422(client, funded):
    rows = b"ref_id,product_code,customer_no\nr1,TEL10,0812\n"
    body = problem(client.post("/v1/bulk?wallet_id=wal_nope", data=rows, headers=funded.tenant.headers,
                               content_type="text/csv"), 422)
    assert body["errors"] == {"wallet_id": ["no such wallet"]}


def test_a_csv_cell_with_a_nul_is_an_invalid_row_and_the_file_is_stored(app, client, funded):
    rows = "ref_id,product_code,customer_no\nr1,TEL10,08\u00001\nr2,TEL10,081234567890\n".encode()
    response = client.post("/v1/bulk?on_invalid=skip", data=rows, headers=funded.tenant.headers,
                           content_type="text/csv")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    items = client.get(f"/v1/bulk/{job['id']}/items", headers=funded.tenant.headers).get_json()["items"]
    assert items[0]["customer_no"] == "08\\u00001"
    assert items[0]["error"] == "customer_no contains a NUL character"
    assert items[1]["error"] is None


def test_oauth_token_refuses_a_nul_client_id_with_invalid_request(client, tenant_factory):
    t = tenant_factory()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "cli\u0000",
                                                  "client_secret": t.client_secret})
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_request"
    import base64

    basic = base64.b64encode(f"{t.client_id}%00:{t.client_secret}".encode()).decode()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "error_description": "the client_id contains a NUL character"}


def test_oauth_token_errors_are_rfc_6749_bodies_whatever_refuses_them(client):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "a\u0000"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"
