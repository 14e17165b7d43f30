"""HTTP basics of the foundation: problem+json everywhere, request ids, ops endpoints, docs."""
from __future__ import annotations

import json
import logging

import pytest


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


def test_readyz_is_503_problem_when_redis_is_unreachable(app, client):
    import redis as redis_lib

    state = app.extensions["rop"]
    state._redis = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    body = assert_problem(client.get("/readyz"), 503)
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_unknown_url_is_problem_json_404(client):
    body = assert_problem(client.get("/no/such/thing"), 404)
    assert body["type"].endswith("/not-found")


def test_wrong_method_is_problem_json_405_with_allow(client):
    response = client.post("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_unhandled_error_is_problem_json_500_without_internals(app, client):
    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internals")

    body = assert_problem(client.get("/boom"), 500)
    assert "secret internals" not in json.dumps(body)
    assert body["request_id"]


def test_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.x"})
    assert response.headers["X-Request-ID"] == "abc-123.x"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 200, "semi;colon"])
def test_request_id_is_made_when_missing_or_malformed(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad} if bad else {})
    made = response.headers["X-Request-ID"]
    assert made and made != bad and len(made) == 32


def test_request_id_is_in_the_log_lines_of_the_request(client, caplog):
    caplog.set_level(logging.INFO, logger="hub.http")
    client.get("/readyz", headers={"X-Request-ID": "trace-me-42"})
    records = [r for r in caplog.records if r.name == "hub.http"]
    assert records, "the request was not logged"
    assert any("trace-me-42" in str(r.msg) for r in records)


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert b"rop_http_requests_total" in response.data


def test_openapi_is_generated_and_docs_served_without_cdn(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/healthz" in spec["paths"] and "/readyz" in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "https://" not in html.split("<body>")[1].split("config")[0], "docs must not load from a CDN"
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_the_app_tells_sync_from_async_as_flask_does():
    """HubFlask.ensure_sync reads a code flag where Flask asks inspect: the same answers."""
    import functools

    from flask import Flask

    from hub.app import HubFlask

    def plain():
        return 1

    async def coroutine():
        return 1

    class Handler:
        def method(self):
            return 1

        async def amethod(self):
            return 1

        def __call__(self):
            return 1

    hub_app, flask_app = HubFlask("t1"), Flask("t2")
    for func in (plain, Handler().method, lambda: 1, functools.partial(plain), Handler(), print):
        assert hub_app.ensure_sync(func) is func
        assert flask_app.ensure_sync(func) is func
    for func in (coroutine, Handler().amethod, functools.partial(coroutine)):
        try:
            expected = type(flask_app.ensure_sync(func))
        except RuntimeError as exc:  # Flask without its async extra: the same refusal
            with pytest.raises(RuntimeError, match=str(exc)[:30]):
                hub_app.ensure_sync(func)
        else:
            assert type(hub_app.ensure_sync(func)) is expected
            assert hub_app.ensure_sync(func) is not func
