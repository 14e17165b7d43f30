"""PostgreSQL stops and restarts under a running hub: requests in flight and requests made
while it is away get 503 with Retry-After (never 500), nothing is half-written, /readyz says
the database is down, and the hub serves again once it is back — on a private cluster this
test starts with initdb/pg_ctl (skipped, saying why, where those are not installed)."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub.availability import RETRY_AFTER
from hub.migrate import upgrade
from hub.pgcluster import PrivateCluster, find_binaries


@pytest.fixture(scope="module")
def cluster():
    binaries, why = find_binaries()
    if binaries is None:
        pytest.skip(f"no private PostgreSQL cluster can be made here: {why}")
    made = PrivateCluster(binaries)
    made.start()
    yield made
    made.destroy()


@pytest.fixture(scope="module")
def database_url(cluster):
    admin = create_engine(cluster.url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "rop_outage"'))
    admin.dispose()
    url = make_url(cluster.url.replace("postgresql://", "postgresql+psycopg://")).set(database="rop_outage")
    url = url.render_as_string(hide_password=False)
    upgrade(url)
    return url


@pytest.fixture(autouse=True)
def _cluster_up(cluster):
    """Every test starts with the server running (a test may have left it stopped)."""
    if not cluster.running():
        cluster.start()


def _assert_503(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.get_json()["dependency"] == "database"


def _until_served(client, path: str, headers: dict, tries: int = 50):
    """After a restart a pooled connection may still be a dead one: that request is a 503
    (never a 500) and the pool starts afresh; ask again until the hub serves."""
    for _ in range(tries):
        response = client.get(path, headers=headers)
        if response.status_code != 503:
            return response
        time.sleep(0.1)
    raise AssertionError(f"{path} still 503 after the database came back")


def test_a_stopped_database_is_a_503_with_retry_after_and_readyz_says_which(app, client, tenant_factory,
                                                                           platform_factory, cluster):
    t = tenant_factory()
    finance = platform_factory().headers_for(t)  # top-ups: the platform records money received
    wallet_id = client.get("/v1/wallets", headers=t.headers).get_json()["items"][0]["id"]
    cluster.stop("fast")

    _assert_503(client.get("/v1/wallets", headers=t.headers))
    _assert_503(client.post(f"/v1/wallets/{wallet_id}/topups", json={"amount": 300, "ref_id": "stopped"},
                            headers=finance))
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == str(RETRY_AFTER)
    body = ready.get_json()
    assert body["down"] == ["database"]
    assert body["checks"]["database"]["state"] == "down" and body["checks"]["redis"]["state"] == "up"

    cluster.start()
    assert _until_served(client, "/v1/wallets", t.headers).status_code == 200
    assert client.get("/readyz").status_code == 200
    done = client.post(f"/v1/wallets/{wallet_id}/topups", json={"amount": 300, "ref_id": "stopped"},
                       headers=finance)
    assert done.status_code == 201 and done.get_json()["replayed"] is False


def test_requests_in_flight_when_the_database_restarts_get_503_and_leave_nothing_half_done(
        app, client, tenant_factory, platform_factory, cluster, database_url):
    t = tenant_factory()
    finance = platform_factory().headers_for(t)  # top-ups: the platform records money received
    wallet_id = client.get("/v1/wallets", headers=t.headers).get_json()["items"][0]["id"]
    # Another session holds the wallet's row: the top-ups below wait on it, inside their transaction.
    locker = create_engine(database_url)
    conn = locker.connect()
    transaction = conn.begin()
    conn.execute(text("SELECT id FROM wallets WHERE id = :id FOR UPDATE"), {"id": wallet_id})
    answers: dict[str, object] = {}

    def topup(ref_id: str) -> None:
        answers[ref_id] = app.test_client().post(f"/v1/wallets/{wallet_id}/topups", headers=finance,
                                                 json={"amount": 1000, "ref_id": ref_id})

    refs = [f"in-flight-{n}" for n in range(4)]
    threads = [threading.Thread(target=topup, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    # Autocommit: inside one transaction pg_stat_activity is a snapshot, and the poll would
    # never see the top-ups that had not reached the lock at its first look.
    watcher = locker.connect().execution_options(isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 120  # generous: a loaded machine (CI) is slow to start 4 requests
    while watcher.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND datname = current_database()")) < len(refs):
        assert time.monotonic() < deadline, f"the top-ups never reached the lock: {answers!r}"
        time.sleep(0.02)

    cluster.stop("fast")  # every session ends: the waiting statements fail mid-transaction
    for thread in threads:
        thread.join(30)
    for ref in refs:
        _assert_503(answers[ref])
    for connection in (watcher, conn):
        connection.invalidate()
    del transaction
    locker.dispose()

    cluster.start()
    wallet = _until_served(client, f"/v1/wallets/{wallet_id}", t.headers)
    assert wallet.get_json()["available"] == 0 and wallet.get_json()["held"] == 0  # nothing half-written
    for ref in refs:  # each retried with its ref_id is done once
        again = client.post(f"/v1/wallets/{wallet_id}/topups", json={"amount": 1000, "ref_id": ref},
                            headers=finance)
        assert again.status_code == 201 and again.get_json()["replayed"] is False
    assert client.get(f"/v1/wallets/{wallet_id}", headers=t.headers).get_json()["available"] == 4000


def _funded_purchaser(app, client, tenant_factory):
    """A tenant with a funded main wallet and the sandbox catalog, two purchases made: the
    web process's caches are warm, so a purchase's first database work is the accept
    function's call on a pooled connection of its own (hub.driver.call_in_autocommit).
    :return: ``buy(ref_id)``, the tenant's purchase."""
    from hub.products.testing import seed_sandbox_catalog
    from tests.outages.test_redis_down import _funded
    from tests.transactions.conftest import buy as buy_as

    seed_sandbox_catalog(app, settings={"callback_delay": 0.05})
    t = tenant_factory()
    _funded(app, t.id)

    def buy(ref_id: str):
        return buy_as(client, t, "081234567890", ref_id=ref_id)

    for n in range(2):
        assert buy(f"warm-{n}").status_code == 202
    return buy


def test_a_purchase_while_the_database_is_down_is_a_503_even_when_its_first_work_is_a_new_connection(
        app, client, tenant_factory, cluster):
    """The accept function's call checks a connection out of the pool itself: the pool
    replacing a dead connection raises the driver's own error, which must be a 503 as any
    other database outage is (the fault suite saw a 500 on a PostgreSQL restart)."""
    buy = _funded_purchaser(app, client, tenant_factory)
    app.extensions["rop"].db.engine.dispose()  # no pooled connection left: the next checkout connects
    cluster.stop("fast")
    _assert_503(buy("while-down"))
    cluster.start()
    for _ in range(50):
        answer = buy("while-down")
        if answer.status_code != 503:
            break
        time.sleep(0.1)
    assert answer.status_code == 202, answer.get_json()  # nothing was written by the refused one


def test_the_relay_process_outlives_the_database_going_away_and_relays_once_it_is_back(
        app, client, tenant_factory, cluster):
    from sqlalchemy.exc import DBAPIError

    from hub.bus.relay import HEARTBEAT_KEY, OutboxRelay
    from hub.cache import refcache

    buy = _funded_purchaser(app, client, tenant_factory)
    app.extensions["rop"].redis.set(HEARTBEAT_KEY, "test", ex=60)
    refcache(app).refresh()
    assert buy("for-the-relay").status_code == 202  # left in the outbox for the relay
    relay = OutboxRelay(app)
    app.extensions["rop"].db.engine.dispose()
    cluster.stop("fast")
    with app.app_context(), pytest.raises(DBAPIError):
        relay.relay_once()
    stop = threading.Event()
    loop = threading.Thread(target=relay.run, args=(stop,))
    loop.start()
    try:
        time.sleep(0.5)
        assert loop.is_alive() and relay.relayed["rows"] == 0
        cluster.start()
        deadline = time.monotonic() + 60
        while not relay.relayed["rows"]:
            assert time.monotonic() < deadline, "not relayed once the database was back"
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(30)
    assert relay.relayed["rows"] == 1  # the warm-up's two purchases were relayed by their requests
