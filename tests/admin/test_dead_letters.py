"""Dead letters in the admin UI on the real bus: discard (after a confirmation page, audited)
besides replay, and an empty selection says so."""
from __future__ import annotations

from sqlalchemy import select

from hub.bus.outbox import publish
from hub.bus.testing import Ping, register
from hub.context import CallContext
from hub.db import unit_of_work
from hub.worker import make_worker


def _poison(app, tenant) -> list[str]:
    """Two dead letters: poison messages whose handler fails on every attempt."""
    from hub.bus.models import DeadLetter

    register(app)
    app.extensions["rop"].redis.set("bus_test:broken", 1)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        for n in (1, 2):
            publish(CallContext.system(tenant_id=tenant.id), uow, Ping(n=n, mode="poison"))
        uow.commit()
    make_worker(app).work(burst=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        ids = list(uow.session.scalars(select(DeadLetter.id).order_by(DeadLetter.id)))
    assert len(ids) == 2
    return ids


def test_discard_asks_first_then_discards_and_audits(app, client, admin_kit, tenant_factory):
    from hub.bus.models import DeadLetter
    from hub.tenancy.models import AuditEntry

    keep, drop = _poison(app, tenant_factory())
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    confirm = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [drop]})
    text = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Discard 1 dead letter(s)?" in text and drop in text and keep not in text
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.get(DeadLetter, drop).discarded_at is None  # asking changes nothing

    done = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [drop], "confirmed": "1"},
                       follow_redirects=True)
    page = done.get_data(as_text=True)
    assert "1 dead letter(s) discarded" in page and drop not in page and keep in page
    assert drop in client.get("/admin/dead-letters/?all=1").get_data(as_text=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.get(DeadLetter, drop).discarded_at is not None
        assert uow.session.get(DeadLetter, keep).discarded_at is None
        entries = list(uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "dead_letter.discarded")))
        assert [(e.target_id, e.actor) for e in entries] == [(drop, "admin:op@example.com")]
    # A discarded letter cannot be discarded again (nothing changes, the reason is shown).
    again = client.post("/admin/dead-letters/discard", data={"csrf_token": token, "ids": [drop], "confirmed": "1"},
                        headers={"Referer": "http://localhost/admin/dead-letters/"}, follow_redirects=True)
    assert "already replayed or discarded" in again.get_data(as_text=True)


def test_replay_or_discard_with_nothing_selected_says_so(app, client, admin_kit, tenant_factory):
    from hub.tenancy.models import AuditEntry

    letters = _poison(app, tenant_factory())
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, "/admin/dead-letters/")
    for verb in ("replay", "discard"):
        response = client.post(f"/admin/dead-letters/{verb}", data={"csrf_token": token}, follow_redirects=True)
        assert response.status_code == 200
        assert f"Nothing selected: tick the dead letters to {verb} first." in response.get_data(as_text=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert list(uow.session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("dead_letter.")))) == []
    page = client.get("/admin/dead-letters/").get_data(as_text=True)
    assert all(letter in page for letter in letters)  # untouched
