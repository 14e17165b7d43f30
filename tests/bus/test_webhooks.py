"""Tenant webhooks and the events feed, against a real HTTP receiver on loopback."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rq import Queue

from hub.bus import publish
from hub.bus.testing import Ping, register
from hub.bus.webhooks import BREAKER_THRESHOLD, check_url, verify_signature
from hub.db import unit_of_work
from hub.errors import ValidationFailed
from hub.worker import make_worker

SCOPES = ["events:read", "webhooks:write"]


class Receiver:
    """A webhook receiver: answers the given statuses in turn (then 200), each after ``delay``
    seconds, records each POST and the most POSTs it had in flight at once."""

    def __init__(self, statuses, delay: float = 0.0):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(delay)
                with lock:
                    receiver.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bus_app(app):
    register(app)
    return app


def _publish(app, tenant, n=1, mode="noop"):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        message = publish(tenant.ctx, uow, Ping(n=n, mode=mode))
        uow.commit()
    return message


def _set_hook(client, tenant, url, **extra):
    response = client.put("/v1/webhook", json={"url": url, **extra}, headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_delivery_retries_until_2xx_and_every_attempt_is_recorded(bus_app, client, tenant_factory, receiver_factory):
    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory([500, 500])
    hook = _set_hook(client, tenant, receiver.url, schedule=[0, 0, 0])
    assert hook["secret"].startswith("whsec_")
    message = _publish(bus_app, tenant)
    make_worker(bus_app).work(burst=True)

    assert len(receiver.requests) == 3
    for headers, body in receiver.requests:
        assert verify_signature(hook["secret"], headers["ROP-Signature"], body)
        assert json.loads(body)["id"] == message.id
        assert headers["ROP-Event-Id"] == message.id
    deliveries = client.get("/v1/webhook/deliveries", headers=tenant.headers).get_json()["items"]
    assert len(deliveries) == 1
    assert deliveries[0]["status"] == "delivered" and deliveries[0]["attempts"] == 3
    detail = client.get(f"/v1/webhook/deliveries/{deliveries[0]['id']}", headers=tenant.headers).get_json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 200]

    resent = client.post(f"/v1/webhook/deliveries/{deliveries[0]['id']}/resend", headers=tenant.headers)
    assert resent.status_code == 202
    make_worker(bus_app).work(burst=True)
    assert len(receiver.requests) == 4
    assert json.loads(receiver.requests[-1][1])["id"] == message.id


def test_a_rotating_secret_signs_with_both_secrets(bus_app, client, tenant_factory, receiver_factory):
    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory()
    old = _set_hook(client, tenant, receiver.url)["secret"]
    new = _set_hook(client, tenant, receiver.url, rotate_secret=True)
    assert new["secret"] != old and new["previous_secret_expires_at"]
    _publish(bus_app, tenant)
    make_worker(bus_app).work(burst=True)
    headers, body = receiver.requests[0]
    assert headers["ROP-Signature"].count("v1=") == 2
    assert verify_signature(old, headers["ROP-Signature"], body)
    assert verify_signature(new["secret"], headers["ROP-Signature"], body)
    assert not verify_signature("whsec_wrong", headers["ROP-Signature"], body)


def test_the_circuit_breaker_stops_hammering_a_dead_endpoint(bus_app, client, tenant_factory, receiver_factory):
    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory([500] * 100)
    _set_hook(client, tenant, receiver.url, schedule=[0] * 20)
    _publish(bus_app, tenant)
    make_worker(bus_app).work(burst=True)
    assert len(receiver.requests) == BREAKER_THRESHOLD
    delivery = client.get("/v1/webhook/deliveries", headers=tenant.headers).get_json()["items"][0]
    assert delivery["status"] == "pending" and delivery["next_attempt_at"]
    assert Queue("webhooks", connection=bus_app.extensions["rop"].redis).scheduled_job_registry.count == 1


def test_webhook_urls_on_private_networks_are_refused_unless_allowed():
    for url in ("http://127.0.0.1/x", "http://localhost:8080/", "http://10.1.2.3/", "http://169.254.169.254/latest",
                "http://[::1]/", "http://192.168.0.10/"):
        with pytest.raises(ValidationFailed):
            check_url(url, allow_private=False)
        check_url(url, allow_private=True)
    with pytest.raises(ValidationFailed):
        check_url("ftp://example.com/", allow_private=True)


def test_put_webhook_needs_its_scope_and_a_valid_url(client, tenant_factory):
    reader = tenant_factory(scopes=["events:read"])
    assert client.put("/v1/webhook", json={"url": "http://127.0.0.1/"}, headers=reader.headers).status_code == 403
    writer = tenant_factory(scopes=SCOPES)
    response = client.put("/v1/webhook", json={"url": "not a url"}, headers=writer.headers)
    assert response.status_code == 422
    assert response.content_type.startswith("application/problem+json")


def test_the_events_feed_pages_by_cursor_filters_by_type_and_is_per_tenant(bus_app, client, tenant_factory):
    tenant, other = tenant_factory(scopes=SCOPES), tenant_factory(scopes=SCOPES)
    sent = [_publish(bus_app, tenant, n, mode="echo") for n in range(3)]
    make_worker(bus_app).work(burst=True)  # each ping causes an echoed event
    page = client.get("/v1/events?limit=2", headers=tenant.headers).get_json()
    assert [e["id"] for e in page["items"]] == [m.id for m in sent[:2]]
    rest = client.get(f"/v1/events?after={page['next_cursor']}&type=bus_test.ping", headers=tenant.headers).get_json()
    assert [e["id"] for e in rest["items"]] == [sent[2].id]
    echoed = client.get("/v1/events?type=bus_test.echoed", headers=tenant.headers).get_json()["items"]
    assert len(echoed) == 3 and {e["causation_id"] for e in echoed} == {m.id for m in sent}
    assert all(e["correlation_id"] for e in echoed)
    assert client.get("/v1/events", headers=other.headers).get_json()["items"] == []
    assert client.get("/v1/events").status_code == 401


def test_internal_events_stay_out_of_the_feed_and_webhooks(bus_app, client, tenant_factory, receiver_factory):
    from hub.bus import Event

    class Internal(Event):
        type = "bus_test.internal"
        public = False

    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory()
    _set_hook(client, tenant, receiver.url)
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        publish(tenant.ctx, uow, Internal())
        uow.commit()
    make_worker(bus_app).work(burst=True)
    assert client.get("/v1/events", headers=tenant.headers).get_json()["items"] == []
    assert receiver.requests == []


def test_the_endpoint_look_up_is_once_per_unit_of_work_and_a_new_endpoint_counts_at_once(
        bus_app, client, tenant_factory, receiver_factory):
    from sqlalchemy import select

    from hub.bus.models import WebhookDelivery
    from hub.bus.webhooks import set_webhook

    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory()
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        before = publish(tenant.ctx, uow, Ping(n=1))  # no endpoint yet: remembered for this unit of work
        assert uow.memo[("webhook_endpoint", tenant.id)] is False
        set_webhook(tenant.ctx, uow, receiver.url)  # forgets it
        after = publish(tenant.ctx, uow, Ping(n=2))
        again = publish(tenant.ctx, uow, Ping(n=3))
        uow.commit()
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        delivered = set(uow.session.scalars(select(WebhookDelivery.event_id)))
    assert delivered == {after.id, again.id} and before.id not in delivered


@pytest.fixture
def strict_app(config):
    """An app on the same database and Redis that refuses private webhook addresses (the
    default; the suite's config allows them so that the receiver on loopback can be used)."""
    import dataclasses

    from hub.app import create_app

    strict = create_app(dataclasses.replace(config, webhook_allow_private=False))
    register(strict)
    yield strict
    strict.extensions["rop"].close()


@pytest.mark.parametrize("host, inside", [
    ("[64:ff9b::7f00:1]", "127.0.0.1"), ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"), ("[2002:7f00:1::]", "127.0.0.1"),
    ("[::7f00:1]", "127.0.0.1"), ("[::ffff:7f00:1]", "127.0.0.1"), ("[::ffff:0:a01:203]", "10.1.2.3"),
    ("localhost", "127.0.0.1"),
])
def test_put_webhook_refuses_every_form_of_a_private_address(bus_app, strict_app, tenant_factory, host, inside):
    tenant = tenant_factory(scopes=SCOPES)
    response = strict_app.test_client().put("/v1/webhook", json={"url": f"http://{host}:8080/hook"},
                                            headers=tenant.headers)
    assert response.status_code == 422
    assert inside in response.get_json()["errors"]["url"][0]


def test_put_webhook_takes_the_same_forms_carrying_a_public_address(bus_app, strict_app, tenant_factory):
    tenant = tenant_factory(scopes=SCOPES)
    client = strict_app.test_client()
    for url in ("http://[64:ff9b::808:808]/hook", "http://[2002:808:808::]/hook", "https://8.8.8.8/hook"):
        assert client.put("/v1/webhook", json={"url": url}, headers=tenant.headers).status_code == 200, url


@pytest.mark.parametrize("host, says", [("[64:ff9b::7f00:1]", "carrying the IPv4 address 127.0.0.1"),
                                        ("localhost", "localhost resolves to 127.0.0.1")])
def test_a_delivery_is_judged_on_the_address_it_connects_to(bus_app, strict_app, tenant_factory, receiver_factory,
                                                             host, says):
    """The URL was accepted when set; since then its name points at loopback (or the row was
    changed): the delivery resolves, judges and refuses, and nothing reaches the receiver."""
    from hub.bus.models import WebhookEndpoint

    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory()
    client = strict_app.test_client()
    _set_hook(client, tenant, "http://[64:ff9b::808:808]/hook", schedule=[0])
    port = receiver.server.server_address[1]
    with unit_of_work(strict_app.extensions["rop"].db) as uow:
        uow.session.get(WebhookEndpoint, tenant.id).url = f"http://{host}:{port}/hook"
        uow.commit()
    _publish(strict_app, tenant)
    make_worker(strict_app).work(burst=True)
    assert receiver.requests == []
    delivery = client.get("/v1/webhook/deliveries", headers=tenant.headers).get_json()["items"][0]
    attempts = client.get(f"/v1/webhook/deliveries/{delivery['id']}", headers=tenant.headers).get_json()["attempt_log"]
    assert attempts and all(says in a["error"] and a["status_code"] is None for a in attempts)


def test_deliveries_enqueued_together_go_in_batch_jobs_with_the_delivery_jobs_options(bus_app):
    """A unit of work's deliveries are enqueued in one round trip (enqueue_many): a lone one
    is the delivery job of its id; several are batch jobs of up to DELIVERIES_PER_JOB ids,
    with the delivery job's TTLs (and the hub's job class)."""
    from hub.bus.webhooks import DELIVER_JOB, DELIVER_MANY_JOB, DELIVERIES_PER_JOB, enqueue_now
    from hub.queues import HubJob

    redis = bus_app.extensions["rop"].redis
    queue = Queue("webhooks", connection=redis, job_class=HubJob)
    enqueue_now(bus_app, ["whd_one"])
    [job] = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    assert (job.func_name, job.args, job.timeout, job.result_ttl, job.failure_ttl) == (
        DELIVER_JOB, ("whd_one",), 60, 0, 86400)
    queue.empty()
    ids = [f"whd_{n}" for n in range(2 * DELIVERIES_PER_JOB + 3)]
    enqueue_now(bus_app, ids)
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    assert [len(j.args[0]) for j in jobs] == [DELIVERIES_PER_JOB, DELIVERIES_PER_JOB, 3]
    assert [i for j in jobs for i in j.args[0]] == ids
    assert {(j.func_name, j.result_ttl, j.failure_ttl) for j in jobs} == {(DELIVER_MANY_JOB, 0, 86400)}


def test_one_batch_job_makes_many_deliveries_at_once_each_one_post_with_its_own_retries(
        bus_app, client, tenant_factory, receiver_factory):
    """A unit of work that publishes 30 events: one job on the webhooks queue; it POSTs each
    event once, several in flight together (a slow receiver sees them overlap); the one
    answered 500 is retried alone, on its own schedule."""
    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory([500], delay=0.2)  # the first POST to arrive is answered 500
    _set_hook(client, tenant, receiver.url, schedule=[0])
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        messages = [publish(tenant.ctx, uow, Ping(n=n, mode="noop")) for n in range(30)]
        uow.commit()
    queue = Queue("webhooks", connection=bus_app.extensions["rop"].redis)
    assert queue.count == 1  # one batch job for the 30 deliveries
    make_worker(bus_app).work(burst=True, with_scheduler=True)
    seen = [json.loads(body)["id"] for _, body in receiver.requests]
    assert sorted(seen) == sorted([m.id for m in messages] + [seen[0]])
    assert receiver.most_in_flight > 1
    deliveries = client.get("/v1/webhook/deliveries?limit=100", headers=tenant.headers).get_json()["items"]
    assert len(deliveries) == 30 and {d["status"] for d in deliveries} == {"delivered"}
    assert sorted(d["attempts"] for d in deliveries) == [1] * 29 + [2]


def test_a_batch_jobs_timeout_fails_the_job_and_leaves_the_deliveries_not_made_pending(
        bus_app, client, tenant_factory, receiver_factory):
    """RQ raises the job's timeout in the job's thread: the batch job fails then (it is not
    taken for one delivery's failure), and a delivery it did not make stays pending for the
    deliveries sweep."""
    from rq.registry import FailedJobRegistry

    from hub.bus.models import WebhookDelivery
    from hub.bus.webhooks import DELIVER_MANY_JOB, DELIVERY_THREADS

    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory(delay=2)
    _set_hook(client, tenant, receiver.url, schedule=[60])
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        for n in range(DELIVERY_THREADS + 4):  # more than one round of the job's threads
            publish(tenant.ctx, uow, Ping(n=n, mode="noop"))
        uow.commit()
    queue = Queue("webhooks", connection=bus_app.extensions["rop"].redis)
    [batch] = queue.get_jobs()
    queue.empty()
    job = queue.enqueue(DELIVER_MANY_JOB, batch.args[0], job_timeout=1, result_ttl=0)
    make_worker(bus_app).work(burst=True)
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        statuses = [d.status for d in uow.session.query(WebhookDelivery).filter_by(tenant_id=tenant.id)]
    assert "pending" in statuses  # not made before the timeout: the sweep's to enqueue again
