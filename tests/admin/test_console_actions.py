"""Dead letters discarded (audited), an empty selection refused with a message, and a
transaction's review error cleared once it leaves review."""
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


def test_a_dead_letter_is_discarded_and_kept_in_the_audit_log(app, client, admin_kit, tenant_factory):
    from hub.bus.models import DeadLetter
    from hub.tenancy.models import AuditEntry

    tenant = tenant_factory()
    letter_id = _poison(app, tenant)
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/dead-letters/").get_data(as_text=True)
    assert 'id="discard"' in page and "data-confirm=" in page
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    done = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [letter_id]},
                       follow_redirects=True).get_data(as_text=True)
    assert "1 dead letter(s) discarded" in done and letter_id not in done
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.get(DeadLetter, letter_id) is None
        [entry] = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "dead_letter.discarded"))
        assert entry.actor == "admin:op@example.com" and entry.target_id == letter_id
        assert entry.tenant_id == tenant.id and entry.before["envelope"]["type"] and entry.before["last_error"]
    again = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [letter_id]},
                        follow_redirects=True)
    assert f"no dead letter {letter_id!r}" in again.get_data(as_text=True).replace("&#39;", "'")


def test_replay_or_discard_with_nothing_selected_says_so(app, client, admin_kit, tenant_factory):
    letter_id = _poison(app, tenant_factory())
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    for action, verb in (("replay", "replay"), ("discard", "discard")):
        page = client.post(f"/admin/dead-letters/{action}", data={"csrf_token": token},
                           follow_redirects=True).get_data(as_text=True)
        assert f"Nothing was selected: tick the dead letters to {verb} first." in page
    assert letter_id in client.get("/admin/dead-letters/").get_data(as_text=True)  # untouched


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
