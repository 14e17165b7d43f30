"""Admin users from the admin UI: invitations and reset links (one-time, expiring), disabling
(sessions end at once), roles; every change in the audit log. Real app, real database."""
from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

from sqlalchemy import select, update

from hub.db import unit_of_work

_LINK = re.compile(r'id="one-time-link">https?://[^/]+(/admin/users/link/[^<]+)<')
NEW_PASSWORD = "a brand new long password"


def _db(app):
    return app.extensions["rop"].db


def _audit(app, action: str) -> list:
    from hub.tenancy.models import AuditEntry

    with unit_of_work(_db(app), readonly=True) as uow:
        return [SimpleNamespace(actor=e.actor, target_id=e.target_id, before=e.before, after=e.after)
                for e in uow.session.scalars(select(AuditEntry).where(AuditEntry.action == action))]


def _user(app, email: str):
    from hub.tenancy.models import AdminUser

    with unit_of_work(_db(app), readonly=True) as uow:
        user = uow.session.scalar(select(AdminUser).where(AdminUser.email == email))
        return None if user is None else SimpleNamespace(id=user.id, role=user.role, status=user.status)


def _invite(client, admin_kit, email: str, role: str = "operator") -> str:
    token = admin_kit.csrf_from(client, "/admin/users/")
    response = client.post("/admin/users/invite", data={"csrf_token": token, "email": email, "role": role})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    match = _LINK.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)
    return match.group(1)


def _set_password(app, path: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    """Set the password through the link from a fresh browser (no session; the CSRF token of
    the login page, as the link's own page shows none once the link is used up)."""
    from tests.admin.conftest import csrf_from

    visitor = app.test_client()
    token = csrf_from(visitor, "/admin/login")
    return visitor.post(path, data={"csrf_token": token, "password": password,
                                    "confirm": password if confirm is None else confirm})


def test_an_invitation_link_sets_the_password_once_and_the_user_logs_in(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    path = _invite(client, admin_kit, "New.Op@example.com", "operator")
    invited = _user(app, "new.op@example.com")
    assert invited.status == "invited" and invited.role == "operator"
    assert "new.op@example.com" in client.get("/admin/users/").get_data(as_text=True)
    # An invited user cannot log in before setting a password.
    assert admin_kit.login(app.test_client(), "new.op@example.com").status_code == 401

    page = app.test_client().get(path)
    assert page.status_code == 200 and "new.op@example.com" in page.get_data(as_text=True)
    done = _set_password(app, path)
    assert done.status_code == 302 and done.headers["Location"].endswith("/admin/login")
    assert _user(app, "new.op@example.com").status == "active"

    invitee = app.test_client()
    assert admin_kit.login(invitee, "new.op@example.com", NEW_PASSWORD).status_code == 302
    assert "new.op@example.com (operator)" in invitee.get("/admin/").get_data(as_text=True)

    # Single use: the link does not work again, neither to look nor to set a password.
    again = app.test_client().get(path)
    assert again.status_code == 404 and "does not work" in again.get_data(as_text=True)
    assert _set_password(app, path, "yet another long password").status_code == 404
    assert admin_kit.login(app.test_client(), "new.op@example.com", NEW_PASSWORD).status_code == 302
    assert [e.after["email"] for e in _audit(app, "admin_user.invited")] == ["new.op@example.com"]
    assert _audit(app, "admin_user.invited")[0].actor == "admin:root@example.com"
    assert [e.target_id for e in _audit(app, "admin_user.invitation_accepted")] == [invited.id]


def test_an_expired_invitation_link_is_refused(app, client, admin_kit):
    from hub.tenancy.models import AdminUserToken

    admin_kit.login(client, admin_kit.make_admin(app))
    path = _invite(client, admin_kit, "late@example.com")
    with unit_of_work(_db(app)) as uow:  # 72 hours later: the link's expiry has passed
        uow.session.execute(update(AdminUserToken).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        uow.commit()
    assert app.test_client().get(path).status_code == 404
    assert _set_password(app, path).status_code == 404
    assert _user(app, "late@example.com").status == "invited"


def test_the_link_keeps_the_password_rules_of_the_cli_and_a_newer_link_replaces_it(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    first = _invite(client, admin_kit, "rules@example.com", "viewer")
    short = _set_password(app, first, "short")
    assert short.status_code == 422 and "at least 12 characters" in short.get_data(as_text=True)
    differ = _set_password(app, first, NEW_PASSWORD, "something else entirely")
    assert differ.status_code == 422 and "differ" in differ.get_data(as_text=True)
    second = _invite(client, admin_kit, "rules@example.com", "viewer")  # a new link for the same invitee
    assert second != first
    assert _set_password(app, first).status_code == 404
    assert _set_password(app, second).status_code == 302
    assert _user(app, "rules@example.com").role == "viewer"


def test_a_reset_link_sets_a_new_password_once(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    admin_kit.make_admin(app, "forgot@example.com", role="operator")
    user = _user(app, "forgot@example.com")
    token = admin_kit.csrf_from(client, "/admin/users/")
    response = client.post(f"/admin/users/{user.id}/reset", data={"csrf_token": token})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    path = _LINK.search(response.get_data(as_text=True)).group(1)
    # The old password works until the link is used.
    assert admin_kit.login(app.test_client(), "forgot@example.com").status_code == 302
    assert _set_password(app, path).status_code == 302
    assert admin_kit.login(app.test_client(), "forgot@example.com").status_code == 401
    assert admin_kit.login(app.test_client(), "forgot@example.com", NEW_PASSWORD).status_code == 302
    assert _set_password(app, path, "yet another long password").status_code == 404
    assert [e.target_id for e in _audit(app, "admin_user.reset_link_issued")] == [user.id]
    assert [e.target_id for e in _audit(app, "admin_user.password_reset")] == [user.id]


def test_disabling_a_user_ends_their_sessions_at_once(app, client, admin_kit):
    """The sessions are deleted from the store when the user is disabled (not only refused at
    their next request): enabled again, the user logs in again, but the old cookie opens nothing."""
    admin_kit.login(client, admin_kit.make_admin(app))
    other = app.test_client()
    admin_kit.login(other, admin_kit.make_admin(app, "leaver@example.com", role="operator"))
    assert other.get("/admin/tenants/").status_code == 200
    user = _user(app, "leaver@example.com")
    token = admin_kit.csrf_from(client, "/admin/users/")
    response = client.post(f"/admin/users/{user.id}/status", data={"csrf_token": token, "status": "disabled"},
                           follow_redirects=True)
    assert "leaver@example.com is disabled; 1 session(s) ended." in response.get_data(as_text=True)
    assert admin_kit.login(app.test_client(), "leaver@example.com").status_code == 401
    [entry] = _audit(app, "admin_user.disabled")
    assert entry.target_id == user.id and entry.before == {"status": "active"}
    # Enabled again, the user logs in again; the session open before the disable stays ended.
    client.post(f"/admin/users/{user.id}/status", data={"csrf_token": token, "status": "active"})
    assert admin_kit.login(app.test_client(), "leaver@example.com").status_code == 302
    refused = other.get("/admin/tenants/")  # its first request since the disable
    assert refused.status_code == 302 and "/admin/login" in refused.headers["Location"]


def test_an_admin_cannot_disable_or_demote_themself(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    me = _user(app, "root@example.com")
    token = admin_kit.csrf_from(client, "/admin/users/")
    response = client.post(f"/admin/users/{me.id}/status", data={"csrf_token": token, "status": "disabled"},
                           follow_redirects=True)
    assert "cannot disable yourself" in response.get_data(as_text=True)
    response = client.post(f"/admin/users/{me.id}/role", data={"csrf_token": token, "role": "viewer"},
                           follow_redirects=True)
    assert "cannot change your own role" in response.get_data(as_text=True)
    assert _user(app, "root@example.com").status == "active" and _user(app, "root@example.com").role == "admin"


def test_a_role_change_applies_on_the_next_request_and_is_audited(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    other = app.test_client()
    admin_kit.login(other, admin_kit.make_admin(app, "demoted@example.com", role="operator"))
    user = _user(app, "demoted@example.com")
    token = admin_kit.csrf_from(client, "/admin/users/")
    client.post(f"/admin/users/{user.id}/role", data={"csrf_token": token, "role": "viewer"})
    assert "demoted@example.com (viewer)" in other.get("/admin/").get_data(as_text=True)
    refused = other.post("/admin/tenants/new", data={"csrf_token": admin_kit.csrf_from(other, "/admin/tenants/"),
                                                     "name": "Nope"})
    assert refused.status_code == 403
    [entry] = _audit(app, "admin_user.role_changed")
    assert entry.before == {"role": "operator"} and entry.after == {"role": "viewer"}


def test_only_an_admin_manages_users(app, client, admin_kit):
    admin_kit.make_admin(app)
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/users/").get_data(as_text=True)
    assert "root@example.com" in page and 'id="invite"' not in page
    token = admin_kit.csrf_from(client, "/admin/users/")
    response = client.post("/admin/users/invite", data={"csrf_token": token, "email": "x@example.com",
                                                        "role": "admin"})
    assert response.status_code == 403
    assert _user(app, "x@example.com") is None


def test_a_bad_invitation_is_refused_with_its_reason(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, "/admin/users/")
    for data, message in (({"email": "not-an-email", "role": "operator"}, "not an e-mail address"),
                          ({"email": "ok@example.com", "role": "superuser"}, "role must be one of"),
                          ({"email": "root@example.com", "role": "operator"}, "exists")):
        response = client.post("/admin/users/invite", data={"csrf_token": token, **data},
                               headers={"Referer": "http://localhost/admin/users/"}, follow_redirects=True)
        assert message in response.get_data(as_text=True), data
    assert _user(app, "ok@example.com") is None



def test_using_a_reset_link_ends_the_users_sessions_and_lifts_the_lockout(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    admin_kit.make_admin(app, "shared@example.com", role="operator")
    somewhere = app.test_client()  # a session opened with the password being replaced
    admin_kit.login(somewhere, "shared@example.com")
    assert somewhere.get("/admin/tenants/").status_code == 200
    for _ in range(5):
        admin_kit.login(app.test_client(), "shared@example.com", "a wrong password!!")
    assert admin_kit.login(app.test_client(), "shared@example.com").status_code == 429  # locked out
    user = _user(app, "shared@example.com")
    token = admin_kit.csrf_from(client, "/admin/users/")
    path = _LINK.search(client.post(f"/admin/users/{user.id}/reset", data={"csrf_token": token})
                        .get_data(as_text=True)).group(1)
    assert somewhere.get("/admin/tenants/").status_code == 200  # issuing the link ends nothing
    assert _set_password(app, path).status_code == 302
    refused = somewhere.get("/admin/tenants/")
    assert refused.status_code == 302 and "/admin/login" in refused.headers["Location"]
    assert admin_kit.login(app.test_client(), "shared@example.com", NEW_PASSWORD).status_code == 302
