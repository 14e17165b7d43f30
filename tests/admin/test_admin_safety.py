"""The admin's actions are safe to repeat, sessions end on the server, edits from stale pages are refused.

- a refresh never repeats an action (post/redirect/get; a client secret shown once from a slot);
- logout ends the session on the server (a copied cookie opens nothing), sessions time out
  when idle;
- saving from a stale page answers "changed since you opened it", with the current values;
- ``rop admin set-password`` lifts the login lockout and ends the user's sessions.
"""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from hub.db import unit_of_work
from tests.tenancy.test_cli import rop  # noqa: F401  (the CLI, run as the operator runs it)


def _count(app, model, *where) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(func.count()).select_from(model).where(*where))


def _actions(app, action: str) -> int:
    from hub.tenancy.models import AuditEntry

    return _count(app, AuditEntry, AuditEntry.action == action)


def _secret(page) -> str | None:
    found = re.search(r'id="client-secret">([^<]+)<', page.get_data(as_text=True))
    return found.group(1) if found else None


# -- a refresh never repeats an action ----------------------------------------------------------
def test_a_refresh_after_create_client_shows_already_shown_and_creates_no_second_client(app, client, admin_kit,
                                                                                    tenant_factory):
    from hub.tenancy.models import ApiClient

    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    made = client.post(f"/admin/tenants/{tenant.id}/clients", data={"csrf_token": token, "name": "till"})
    assert made.status_code == 302  # post/redirect/get
    page = client.get(made.headers["Location"])
    secret = _secret(page)
    assert page.status_code == 200 and secret and len(secret) > 30
    assert page.headers["Cache-Control"] == "no-store"
    again = client.get(made.headers["Location"])  # the browser's refresh
    assert again.status_code == 410 and _secret(again) is None and secret not in again.get_data(as_text=True)
    assert 'id="secret-already-shown"' in again.get_data(as_text=True)
    assert _count(app, ApiClient, ApiClient.tenant_id == tenant.id) == 2  # the fixture's and this one
    assert _actions(app, "client.created") == 2


def test_a_refresh_after_rotate_rotates_nothing_and_the_shown_secret_is_the_one_that_works(app, client, admin_kit,
                                                                                       tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    rotated = client.post(f"/admin/clients/{tenant.client_id}/rotate", data={"csrf_token": token})
    assert rotated.status_code == 302
    secret = _secret(client.get(rotated.headers["Location"]))
    assert client.get(rotated.headers["Location"]).status_code == 410
    assert _actions(app, "client.secret_rotated") == 1
    issued = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": tenant.client_id,
                                               "client_secret": secret})
    assert issued.status_code == 200, issued.get_data(as_text=True)


def test_a_secret_slot_is_not_readable_by_another_admin(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    location = client.post(f"/admin/clients/{tenant.client_id}/rotate", data={"csrf_token": token}).headers["Location"]
    other = app.test_client()
    admin_kit.login(other, admin_kit.make_admin(app, "second@example.com"))
    assert other.get(location).status_code == 410
    assert _secret(client.get(location))  # still there for the admin who rotated


def _post_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and "POST" in rule.methods and rule.endpoint != "admin.login":
            yield rule


def test_no_admin_form_that_acts_answers_with_a_page_a_refresh_would_post_again(app, client, admin_kit,
                                                                              tenant_factory):
    """Every admin POST (tenants, clients, providers, wallets, transactions, bulk, catalog, pricing,
    dead letters, deliveries) that does something answers with a redirect; one answered with a
    page (a refusal, a confirmation step) did nothing (no audit entry), so a refresh repeats nothing."""
    from hub.tenancy.models import AuditEntry

    tenant = tenant_factory()
    ids = {"tenant_id": tenant.id, "client_id": tenant.client_id}
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    rules = sorted(_post_rules(app), key=lambda r: r.endpoint == "admin.logout")  # logout last
    assert len(rules) > 15
    for rule in rules:
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: ids.get(m.group(1), "x"), rule.rule)
        audited = _count(app, AuditEntry)
        response = client.post(url, data={"csrf_token": token, "name": "n", "reason": "r", "amount": "1"})
        if response.status_code not in (302, 303):
            assert _count(app, AuditEntry) == audited, (rule.rule, response.status_code)


# -- logout ends the session on the server; idle timeout -----------------------------------------
def _replay(app, cookie: str):
    """A second browser holding a copy of the cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie, domain="localhost")
    return other


def test_a_cookie_copied_before_logout_opens_nothing_afterwards(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    copied = client.get_cookie("session").value
    assert _replay(app, copied).get("/admin/tenants/").status_code == 200
    token = admin_kit.csrf_from(client, "/admin/tenants/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    replayed = _replay(app, copied).get("/admin/tenants/")
    assert replayed.status_code == 302 and replayed.headers["Location"].startswith("/admin/login")
    assert not list(app.extensions["rop"].redis.scan_iter("rop:admin:session:*"))  # nothing left behind


def test_the_session_cookie_holds_an_id_not_the_session(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    admin_kit.login(client, email)
    sid = client.get_cookie("session").value.rsplit(".", 1)[0]  # the id, signed
    stored = app.extensions["rop"].redis.get(f"rop:admin:session:{sid}")
    assert stored is not None and email in stored.decode()  # the session is the server's


def test_a_login_starts_a_new_session_id(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    client.get("/admin/login")
    before = client.get_cookie("session").value  # the login form's session (its CSRF token)
    admin_kit.login(client, email)
    assert client.get_cookie("session").value != before
    assert _replay(app, before).get("/admin/").status_code == 302  # a planted id does not get the login


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


def test_a_session_idle_longer_than_the_timeout_goes_back_to_login(app, client, admin_kit, monkeypatch):
    clock = _Clock()
    monkeypatch.setitem(app.config, "ROP_ADMIN_CLOCK", clock)
    assert app.config["ROP_ADMIN_IDLE_SECONDS"] == 30 * 60  # the default: 30 minutes
    admin_kit.login(client, admin_kit.make_admin(app))
    for _ in range(3):  # in use: an hour and a half, never idle 30 minutes
        clock.advance(29)
        assert client.get("/admin/").status_code == 200
    clock.advance(31)
    idle = client.get("/admin/")
    assert idle.status_code == 302 and idle.headers["Location"].startswith("/admin/login")
    clock.advance(-31)  # the session was ended on the server, not just refused once
    assert client.get("/admin/").status_code == 302


def test_a_pages_background_poll_does_not_keep_an_idle_session_alive(app, client, admin_kit, monkeypatch):
    clock = _Clock()
    monkeypatch.setitem(app.config, "ROP_ADMIN_CLOCK", clock)
    admin_kit.login(client, admin_kit.make_admin(app))
    clock.advance(20)
    assert client.get("/admin/transactions/trx_none/status.json").status_code == 404  # polled, in the session
    clock.advance(11)
    assert client.get("/admin/").status_code == 302


def test_the_idle_timeout_and_lifetime_come_from_the_environment(monkeypatch):
    from flask import Flask
    from rop_admin.setup import _session_settings

    from hub.config import ConfigError

    monkeypatch.setenv("ROP_ADMIN_IDLE_MINUTES", "5")
    monkeypatch.setenv("ROP_ADMIN_SESSION_SECONDS", "3600")
    app = Flask("t")
    _session_settings(app)
    assert app.config["ROP_ADMIN_IDLE_SECONDS"] == 300 and app.config["ROP_ADMIN_SESSION_SECONDS"] == 3600
    monkeypatch.setenv("ROP_ADMIN_IDLE_MINUTES", "soon")
    with pytest.raises(ConfigError, match="ROP_ADMIN_IDLE_MINUTES"):
        _session_settings(Flask("t"))


# -- edits from a stale page ---------------------------------------------------------------------
def _version(page: str) -> str:
    return re.search(r'name="version" value="(\d+)"', page).group(1)


def test_saving_tenant_settings_from_a_stale_page_answers_changed_since_you_opened_it(app, client, admin_kit,
                                                                                    tenant_factory):
    from hub.tenancy.models import Tenant

    tenant = tenant_factory()
    path = f"/admin/tenants/{tenant.id}"
    admin_kit.login(client, admin_kit.make_admin(app))
    stale = client.get(path).get_data(as_text=True)  # admin one opens the page
    token = admin_kit.csrf_from(client, path)
    other = app.test_client()
    admin_kit.login(other, admin_kit.make_admin(app, "second@example.com"))
    other_token = admin_kit.csrf_from(other, path)
    saved = other.post(path + "/settings", data={"csrf_token": other_token, "version": _version(other.get(
        path).get_data(as_text=True)), "settings": '{"tier": "gold"}'})
    assert saved.status_code == 302  # admin two saves first
    late = client.post(path + "/settings", data={"csrf_token": token, "version": _version(stale),
                                                 "settings": '{"tier": "silver"}'})
    assert late.status_code == 409
    page = late.get_data(as_text=True)
    assert "changed since you opened it" in page and "nothing was saved" in page
    assert '&#34;tier&#34;: &#34;gold&#34;' in page or '"tier": "gold"' in page  # the current values, in the form
    assert "silver" in re.search(r'id="your-change">([^<]*)<', page).group(1)  # the draft, to apply again
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.get(Tenant, tenant.id).settings == {"tier": "gold"}
    renamed = client.post(path + "/rename", data={"csrf_token": token, "version": _version(stale), "name": "Late"})
    assert renamed.status_code == 409  # the rename form of the stale page too
    fresh = client.post(path + "/settings", data={"csrf_token": token, "version": _version(page),
                                                  "settings": '{"tier": "silver"}'})
    assert fresh.status_code == 302  # from the page as it is now, the save goes through
    assert _actions(app, "tenant.updated") == 2


@pytest.mark.postgres
def test_two_saves_racing_on_one_tenant_do_not_both_win(app):
    """Both read version 1; the second UPDATE finds the version moved on and is refused."""
    from hub.context import CallContext
    from hub.errors import EditConflict
    from hub.tenancy.service import create_tenant, get_tenant, update_tenant

    db, ctx = app.extensions["rop"].db, CallContext.system(actor="cli:tests")
    with unit_of_work(db) as uow:
        tenant_id = create_tenant(ctx, uow, "Race Mart").id
        uow.commit()
    with unit_of_work(db) as first, unit_of_work(db) as second:
        read = [get_tenant(first, tenant_id), get_tenant(second, tenant_id)]  # both read version 1 (and hold it)
        assert [t.version for t in read] == [1, 1]
        update_tenant(ctx, second, tenant_id, settings={"by": "second"})
        second.commit()
        with pytest.raises(EditConflict):
            update_tenant(ctx, first, tenant_id, settings={"by": "first"})
    with unit_of_work(db, readonly=True) as uow:
        assert get_tenant(uow, tenant_id).settings == {"by": "second"}


def test_a_price_rule_saved_from_a_stale_page_is_refused_with_the_current_rule(app, client, admin_kit):
    from hub.products.models import PriceRule

    admin_kit.login(client, admin_kit.make_admin(app))
    stale = client.get("/admin/pricing/").get_data(as_text=True)
    seen = re.search(r'name="seen" id="rules-seen" value="([^"]*)"', stale).group(1).replace("&#34;", '"')
    assert json.loads(seen) == {}
    token = admin_kit.csrf_from(client, "/admin/pricing/")
    other = app.test_client()
    admin_kit.login(other, admin_kit.make_admin(app, "second@example.com"))
    other_page = other.get("/admin/pricing/").get_data(as_text=True)
    other_seen = re.search(r'id="rules-seen" value="([^"]*)"', other_page).group(1).replace("&#34;", '"')
    form = {"tenant_id": "", "target": "all", "kind": "markup_percent"}
    assert other.post("/admin/pricing/save", data={**form, "csrf_token": admin_kit.csrf_from(other, "/admin/pricing/"),
                                                   "seen": other_seen, "value": "300"}).status_code == 302
    late = client.post("/admin/pricing/save", data={**form, "csrf_token": token, "seen": seen, "value": "200"},
                       follow_redirects=True)
    page = late.get_data(as_text=True)
    assert "changed since you opened it" in page and "now markup_percent 300" in page
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert [r.value for r in uow.session.scalars(select(PriceRule))] == [300]
    current = re.search(r'id="rules-seen" value="([^"]*)"', page).group(1).replace("&#34;", '"')
    removed = client.post("/admin/pricing/remove", data={"csrf_token": token, "tenant_id": "", "target": "all",
                                                         "seen": seen}, follow_redirects=True)
    assert "changed since you opened it" in removed.get_data(as_text=True)
    assert _count(app, PriceRule) == 1
    client.post("/admin/pricing/save", data={**form, "csrf_token": token, "seen": current, "value": "200"})
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert [r.value for r in uow.session.scalars(select(PriceRule))] == [200]


# -- rop admin set-password ----------------------------------------------------------------------
def test_set_password_lifts_the_login_lockout_and_ends_the_users_sessions(app, client, admin_kit, rop):  # noqa: F811
    email = admin_kit.make_admin(app)
    earlier = app.test_client()
    admin_kit.login(earlier, email)  # a session opened before the reset
    for _ in range(5):
        assert admin_kit.login(client, email, "wrong password!!").status_code == 401
    assert admin_kit.login(client, email).status_code == 429  # locked out
    done = rop("admin", "set-password", email, "--password-stdin", stdin="a brand new passphrase\n")
    assert done.returncode == 0, done.stderr
    assert "lockout lifted" in done.stdout and "1 session(s) ended" in done.stdout
    assert admin_kit.login(client, email, "a brand new passphrase").status_code == 302
    assert client.get("/admin/").status_code == 200
    assert earlier.get("/admin/").status_code == 302
