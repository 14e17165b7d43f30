"""The database goes away under a running hub (SQLite: its file cannot be opened): 503 with
Retry-After naming the database, /readyz says which is down, nothing half-written, and the
same requests work once it is back. A database bug stays a 500."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hub.availability import RETRY_AFTER, unavailable_dependency
from hub.migrate import upgrade
from tests.outages.conftest import metric


@pytest.fixture
def database_url(tmp_path):
    """A SQLite database of this test's own, in a folder the test takes away."""
    store = tmp_path / "store"
    store.mkdir()
    url = f"sqlite:///{store / 'rop.sqlite3'}"
    upgrade(url)
    return url


def _assert_503(response, dependency: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.get_json()["dependency"] == dependency


def test_an_unreachable_database_file_is_a_503_and_the_same_requests_work_once_it_is_back(
        app, client, tenant_factory, platform_factory, database_url):
    t = tenant_factory()
    finance = platform_factory().headers_for(t)  # top-ups: the platform records money received
    wallet_id = client.get("/v1/wallets", headers=t.headers).get_json()["items"][0]["id"]
    topup = {"amount": 700, "ref_id": "while-away"}

    store = Path(make_url(database_url).database).parent
    away = store.with_name("store-away")
    store.rename(away)
    store.write_text("the folder of the database is gone")  # cannot be opened, not even by root
    app.extensions["rop"].db.engine.dispose()  # the process's open connections go, as at a restart
    counted = metric("rop_dependency_unavailable_total", dependency="database")

    _assert_503(client.get("/v1/wallets", headers=t.headers), "database")
    _assert_503(client.post(f"/v1/wallets/{wallet_id}/topups", json=topup, headers=finance), "database")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == str(RETRY_AFTER)
    assert ready.get_json()["down"] == ["database"]
    assert ready.get_json()["checks"]["redis"]["state"] == "up"
    assert metric("rop_dependency_unavailable_total", dependency="database") == counted + 2
    assert client.get("/healthz").status_code == 200  # the process itself is alive

    store.unlink()
    away.rename(store)
    assert client.get("/readyz").status_code == 200
    done = client.post(f"/v1/wallets/{wallet_id}/topups", json=topup, headers=finance)
    assert done.status_code == 201 and done.get_json()["replayed"] is False  # it was not done while away
    assert client.get(f"/v1/wallets/{wallet_id}", headers=t.headers).get_json()["available"] == 700


def test_a_database_bug_is_still_a_500_not_a_503(app, client, tmp_path):
    """Only errors saying the database is unreachable or busy are 503: a bad statement is a
    bug, a 500 that is logged (SQLite raises both as OperationalError)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bug.sqlite3'}")
    with pytest.raises(OperationalError) as bug, engine.connect() as conn:
        conn.execute(text("SELEC 1"))
    assert unavailable_dependency(bug.value) is None
    gone = create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.sqlite3'}")
    with pytest.raises(OperationalError) as unreachable, gone.connect():
        pass
    assert unavailable_dependency(unreachable.value) == "database"

    from hub.web import request_uow

    @app.route("/test-only/bad-sql")
    def bad_sql():
        request_uow().session.execute(text("SELECT no_such_column FROM tenants"))
        return "unreachable"

    response = client.get("/test-only/bad-sql")
    assert response.status_code == 500 and response.mimetype == "application/problem+json"


def test_a_pool_with_no_connection_to_give_is_a_503(app, client, tenant_factory, database_url):
    """Every connection of the process's pool is taken and none comes back in time."""
    from hub.db import Database

    t = tenant_factory()
    state = app.extensions["rop"]
    state.db.dispose()
    state.db = Database(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    assert client.get("/v1/wallets", headers=t.headers).status_code == 200
    taken = state.db.engine.connect()
    try:
        _assert_503(client.get("/v1/wallets", headers=t.headers), "database")
    finally:
        taken.close()
    assert client.get("/v1/wallets", headers=t.headers).status_code == 200


def test_the_token_endpoint_answers_an_unreachable_database_in_rfc_6749_form(app, client, tenant_factory,
                                                                             database_url):
    t = tenant_factory()
    form = {"grant_type": "client_credentials", "client_id": t.client_id, "client_secret": t.client_secret}
    store = Path(make_url(database_url).database).parent
    away = store.with_name("store-away")
    store.rename(away)
    store.write_text("the folder of the database is gone")
    app.extensions["rop"].db.engine.dispose()
    try:
        response = client.post("/oauth/token", data=form)
        assert response.status_code == 503 and response.mimetype == "application/json"
        assert response.get_json()["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"] == str(RETRY_AFTER)
    finally:
        store.unlink()
        away.rename(store)
    assert client.post("/oauth/token", data=form).status_code == 200
