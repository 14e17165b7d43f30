"""Per-route body limits (413 problem+json, before the body is read) and providers'
callbacks stored whole, as bytes, whatever they hold."""
from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from hub.db import unit_of_work
from hub.providers.models import ProviderCallback
from hub.providers.testing import LiveServer


def callbacks(app) -> list[ProviderCallback]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = list(uow.session.scalars(select(ProviderCallback)))
        uow.session.expunge_all()
        return rows


@pytest.fixture
def sandbox_config(app):
    from hub.providers import service

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = service.add_config(uow, "sandbox", "Sandbox", credentials={"callback_secret": "cb-secret"})
        uow.commit()
        return row.id


def test_a_json_body_past_the_limit_is_413_before_it_is_read(app_with_limits, tenant_factory):
    app = app_with_limits(body_json=2000)
    t = tenant_factory()
    body = json.dumps({"ref_id": "r", "product_code": "TEL10", "customer_no": "0" * 3000})
    response = app.test_client().post("/v1/transactions", data=body, headers=t.headers,
                                      content_type="application/json")
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert response.get_json()["limit"] == 2000
    small = app.test_client().post("/v1/transactions", json={"ref_id": "r"}, headers=t.headers)
    assert small.status_code == 422


def test_the_default_limits_are_1_mib_64_kib_and_50_mib(app):
    limits = app.extensions["rop"].config.limits
    assert (limits.body_json, limits.body_callback, limits.body_bulk) == (2**20, 2**16, 50 * 2**20)
    assert limits.bulk_max_rows == 1_000_000


def test_a_chunked_body_is_cut_at_the_limit_over_real_http(app_with_limits, tenant_factory):
    """No Content-Length to refuse up front: the stream is cut when the limit is crossed."""
    app = app_with_limits(body_bulk=100_000)
    t = tenant_factory()

    def rows():
        yield b"ref_id,product_code,customer_no\n"
        for n in range(20_000):
            yield f"r{n},TEL10,0812{n:08d}\n".encode()

    with LiveServer(app) as server:
        response = httpx.post(f"{server.url}/v1/bulk", content=rows(), timeout=30,
                              headers={**t.headers, "Content-Type": "text/csv"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_bulk_upload_takes_more_than_a_json_body(app_with_limits, tenant_factory):
    app = app_with_limits(body_json=1000, body_bulk=200_000)
    t = tenant_factory(scopes=["bulk:write", "bulk:read"])
    rows = b"ref_id,product_code,customer_no\n" + b"".join(f"r{n},TEL10,0812{n:08d}\n".encode() for n in range(500))
    assert 1000 < len(rows) < 200_000
    response = app.test_client().post("/v1/bulk", data=rows, headers=t.headers, content_type="text/csv")
    assert response.status_code == 202, response.get_json()
    too_big = rows * 20
    response = app.test_client().post("/v1/bulk", data=too_big, headers=t.headers, content_type="text/csv")
    assert response.status_code == 413


def test_a_callback_past_its_limit_is_413_and_stores_nothing(app, client, sandbox_config):
    response = client.post(f"/callbacks/sandbox/{sandbox_config}", data=b"x" * (64 * 1024 + 1),
                           content_type="application/json")
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert callbacks(app) == []


def test_a_callback_with_nul_bytes_is_stored_whole_as_bytes_and_judged_by_its_plugin(app, client, sandbox_config):
    body = b'{"ref_id": "trx-\x00-1", "rc": "00", "junk": "\xff\xfe"}' + b"\x00" * 100
    response = client.post(f"/callbacks/sandbox/{sandbox_config}", data=body, content_type="application/json",
                           headers={"X-Sandbox-Signature": "forged"})
    assert response.status_code == 403
    (row,) = callbacks(app)
    assert row.body == body  # every byte, NUL and invalid UTF-8 included
    assert row.reason == "bad signature" and row.accepted is False


def test_a_signed_callback_whose_result_holds_a_nul_is_refused_not_lost(app, client, sandbox_config):
    import hashlib
    import hmac

    body = json.dumps({"ref_id": "trx-\u0000", "rc": "00", "sn": "SN1"}).encode()
    signature = hmac.new(b"cb-secret", body, hashlib.sha256).hexdigest()
    response = client.post(f"/callbacks/sandbox/{sandbox_config}", data=body, content_type="application/json",
                           headers={"X-Sandbox-Signature": signature})
    assert response.status_code == 403, response.get_json()
    (row,) = callbacks(app)
    assert row.body == body and row.accepted is False
    assert row.reason == ("the plugin's result cannot be stored: provider_ref contains a NUL character; "
                          "ref_id contains a NUL character")
