"""Dead letters discarded (after a confirmation page; audited whole; an empty selection:
tests/admin/test_dead_letters.py), and a transaction's review error cleared once it leaves
review."""
from __future__ import annotations

from sqlalchemy import select

from hub.bus.outbox import publish
from hub.bus.testing import Ping, register
from hub.context import CallContext
from hub.db import unit_of_work
from hub.transactions.lifecycle import Settings
from hub.worker import make_worker
from tests.transactions.conftest import buy, drain, transaction


def _poison(app, tenant) -> str:
    from hub.bus.models import DeadLetter

    register(app)
    app.extensions["rop"].redis.set("bus_test:broken", 1)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        publish(CallContext.system(tenant_id=tenant.id), uow, Ping(n=1, mode="poison"))
        uow.commit()
    make_worker(app).work(burst=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(DeadLetter.id))


def test_a_dead_letter_is_discarded_and_kept_whole_in_the_audit_log(app, client, admin_kit, tenant_factory):
    from hub.bus.models import DeadLetter
    from hub.tenancy.models import AuditEntry

    tenant = tenant_factory()
    letter_id = _poison(app, tenant)
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/dead-letters/").get_data(as_text=True)
    assert 'id="discard"' in page
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    asked = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [letter_id]})
    assert asked.status_code == 200 and 'id="confirm-discard"' in asked.get_data(as_text=True)
    done = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [letter_id], "confirmed": "1"},
                       follow_redirects=True).get_data(as_text=True)
    assert "1 dead letter(s) discarded" in done and letter_id not in done
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.get(DeadLetter, letter_id).discarded_at is not None  # kept, marked
        [entry] = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "dead_letter.discarded"))
        assert entry.actor == "admin:op@example.com" and entry.target_id == letter_id
        assert entry.tenant_id == tenant.id and entry.before["envelope"]["type"] and entry.before["last_error"]
    unknown = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": ["dlq_nope"],
                                                                "confirmed": "1"}, follow_redirects=True)
    assert "no dead letter 'dlq_nope'" in unknown.get_data(as_text=True).replace("&#39;", "'")


def test_the_review_error_is_cleared_when_the_provider_answers(app, client, admin_kit, funded):
    app.extensions["rop"].extras["transactions.settings"] = Settings(
        check_schedule=(0.0,), review_after=0.0, redrive_after=0.0, sent_timeout=0.0)
    trx_id = buy(client, funded.tenant, "081200008888").json["id"]  # pending; no callback reaches us here
    drain(app, until=lambda: transaction(app, funded.tenant.id, trx_id)["status"] == "review")
    assert transaction(app, funded.tenant.id, trx_id)["error"].startswith("no final answer")
    admin_kit.login(client, admin_kit.make_admin(app))
    path = f"/admin/transactions/{trx_id}"
    assert client.post(path + "/recheck", data={"csrf_token": admin_kit.csrf_from(client, path)}).status_code == 302
    drain(app, until=lambda: transaction(app, funded.tenant.id, trx_id)["status"] == "succeeded")
    assert transaction(app, funded.tenant.id, trx_id)["error"] is None
    assert "no final answer" not in client.get(path).get_data(as_text=True).split('id="timeline"')[0]
