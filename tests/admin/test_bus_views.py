"""Dead letters and webhook deliveries in the admin UI, on the real bus (a poison message)."""
from __future__ import annotations

from sqlalchemy import select

from hub.bus.outbox import publish
from hub.bus.testing import Ping, register
from hub.context import CallContext
from hub.db import unit_of_work
from hub.worker import make_worker


def test_a_dead_letter_is_shown_and_replayed_from_the_admin(app, client, admin_kit, tenant_factory):
    from hub.bus.models import DeadLetter
    from hub.tenancy.models import AuditEntry

    register(app)
    tenant = tenant_factory()
    redis = app.extensions["rop"].redis
    redis.set("bus_test:broken", 1)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        publish(CallContext.system(tenant_id=tenant.id), uow, Ping(n=1, mode="poison"))
        uow.commit()
    make_worker(app).work(burst=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        letter_id = uow.session.scalar(select(DeadLetter.id))
    assert letter_id

    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/dead-letters/").get_data(as_text=True)
    assert letter_id in page and "the cause is not fixed yet" in page
    redis.delete("bus_test:broken")
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    response = client.post("/admin/dead-letters/replay", data={"csrf_token": token, "ids": [letter_id]})
    assert response.status_code == 302
    make_worker(app).work(burst=True)
    assert letter_id not in client.get("/admin/dead-letters/").get_data(as_text=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.get(DeadLetter, letter_id).replayed_at is not None
        entry = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "dead_letter.replayed"))
        assert entry.target_id == letter_id and entry.actor == "admin:op@example.com"


def test_an_unknown_dead_letter_replay_is_refused_with_a_message(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    response = client.post("/admin/dead-letters/replay", data={"csrf_token": token, "ids": ["dlq_nope"]},
                           follow_redirects=True)
    assert "no dead letter" in response.get_data(as_text=True)


def test_another_tenants_delivery_id_is_not_found(app, client, admin_kit, tenant_factory):
    one, two = tenant_factory(), tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    response = client.get(f"/admin/deliveries/{two.id}/whd_missing", follow_redirects=True)
    assert "not found" in response.get_data(as_text=True).lower()
    assert client.get(f"/admin/deliveries/?tenant={one.id}&status=failed").status_code == 200
