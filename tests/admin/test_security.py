"""Admin UI security: login required everywhere, CSRF on every form, roles, lockout, audit."""
from __future__ import annotations

import re

from rop_admin.security import PUBLIC_ENDPOINTS
from sqlalchemy import select

from hub.db import unit_of_work


def _admin_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and rule.endpoint not in PUBLIC_ENDPOINTS:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def _url(rule) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", rule.rule)


def _audit_actions(app) -> list[str]:
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db) as uow:
        return list(uow.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_every_admin_url_redirects_to_login_without_a_session(app, client, admin_kit):
    rules = list(_admin_rules(app))
    assert len(rules) > 5, "the admin URL map walk found almost nothing to check"
    for rule, method in rules:
        response = client.open(_url(rule), method=method)
        assert response.status_code == 302, (method, rule.rule, response.status_code)
        assert response.headers["Location"].startswith("/admin/login"), (method, rule.rule)


def test_login_page_and_assets_are_public(client, admin_kit):
    assert client.get("/admin/login").status_code == 200
    assert client.get("/admin/assets/admin.css").status_code == 200


def test_login_with_the_right_password_opens_the_dashboard_and_is_audited(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    response = admin_kit.login(client, email)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert "admin.login" in _audit_actions(app)


def test_the_session_cookie_is_httponly_and_samesite_lax_and_secure_off_localhost(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    cookie = admin_kit.login(client, email).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    remote = app.test_client()
    token = admin_kit.csrf_from(remote, "http://hub.example.com/admin/login")
    response = remote.post("http://hub.example.com/admin/login",
                           data={"email": email, "password": "correct horse battery staple", "csrf_token": token})
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_wrong_password_is_refused_and_five_failures_lock_the_account(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    for _ in range(5):
        assert admin_kit.login(client, email, "wrong password!!").status_code == 401
    response = admin_kit.login(client, email)  # the right password, but locked now
    assert response.status_code == 429
    assert "locked" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    actions = _audit_actions(app)
    assert actions.count("admin.login_failed") == 5 and "admin.login_locked" in actions


def test_a_form_posted_without_its_csrf_token_is_refused(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    admin_kit.login(client, email)
    response = client.post("/admin/tenants/new", data={"name": "No Token"})
    assert response.status_code == 400
    assert client.post("/admin/tenants/new", data={"name": "Bad", "csrf_token": "forged"}).status_code == 400
    assert "tenant.created" not in _audit_actions(app)


def test_the_login_form_itself_needs_its_csrf_token(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    response = client.post("/admin/login", data={"email": email, "password": "correct horse battery staple"})
    assert response.status_code == 400


def test_an_operator_cannot_create_clients(app, client, tenant_factory, admin_kit):
    tenant = tenant_factory()
    email = admin_kit.make_admin(app, "op@example.com", role="operator")
    admin_kit.login(client, email)
    page = client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    assert "create-client" not in page
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    response = client.post(f"/admin/tenants/{tenant.id}/clients", data={"csrf_token": token, "name": "x"})
    assert response.status_code == 403
    assert client.post(f"/admin/clients/{tenant.client_id}/revoke", data={"csrf_token": token}).status_code == 403
    assert _audit_actions(app).count("client.created") == 1  # only the fixture's own client
    assert "client.revoked" not in _audit_actions(app)


def test_an_admin_creates_a_tenant_and_a_client_whose_secret_is_shown_once(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    admin_kit.login(client, email)
    token = admin_kit.csrf_from(client, "/admin/tenants/")
    response = client.post("/admin/tenants/new", data={"name": "Acme Shop", "csrf_token": token})
    assert response.status_code == 302
    tenant_path = response.headers["Location"]
    page = client.post(tenant_path + "/clients", data={"csrf_token": token, "name": "pos",
                                                       "scopes": ["wallets:read", "transactions:read"]},
                       follow_redirects=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="client-secret">([^<]+)<', page.get_data(as_text=True)).group(1)
    assert len(secret) > 30
    for path in (tenant_path, "/admin/tenants/", "/admin/audit/", "/admin/"):
        assert secret not in client.get(path).get_data(as_text=True)
    actions = _audit_actions(app)
    assert "tenant.created" in actions and "client.created" in actions
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db) as uow:
        entry = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.created"))
        assert entry.actor == f"admin:{email}" and entry.actor_type == "admin"


def test_disable_rotate_and_revoke_go_through_tenancy_and_the_audit_log(app, client, tenant_factory, admin_kit):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    asked = client.post(f"/admin/tenants/{tenant.id}/status", data={"csrf_token": token, "status": "disabled"})
    assert "Disable the tenant" in asked.get_data(as_text=True)  # a confirmation page: nothing changed yet
    assert 'status-active">active<' in client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    client.post(f"/admin/tenants/{tenant.id}/status", data={"csrf_token": token, "status": "disabled", "confirm": "1"})
    assert 'status-disabled">disabled<' in client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    rotated = client.post(f"/admin/clients/{tenant.client_id}/rotate", data={"csrf_token": token},
                          follow_redirects=True)
    assert 'id="client-secret"' in rotated.get_data(as_text=True)
    client.post(f"/admin/clients/{tenant.client_id}/revoke", data={"csrf_token": token})
    actions = _audit_actions(app)
    for action in ("tenant.disabled", "client.secret_rotated", "client.revoked"):
        assert action in actions


def test_logout_ends_the_session(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, "/admin/tenants/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/tenants/").status_code == 302
    assert "admin.logout" in _audit_actions(app)


def test_read_views_render(app, client, tenant_factory, admin_kit):
    tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    for path in ("/admin/", "/admin/tenants/", "/admin/dead-letters/", "/admin/dead-letters/?all=1",
                 "/admin/deliveries/", "/admin/providers/", "/admin/wallets/", "/admin/audit/?action=admin.&actor=root"):
        assert client.get(path).status_code == 200, path


def test_an_operator_renames_a_tenant_but_only_an_admin_changes_its_settings(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    assert "save-settings" not in client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    client.post(f"/admin/tenants/{tenant.id}/rename", data={"csrf_token": token, "name": "Renamed Mart"})
    assert 'id="tenant-title">Renamed Mart<' in client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    assert client.post(f"/admin/tenants/{tenant.id}/settings",
                       data={"csrf_token": token, "settings": '{"a": 1}'}).status_code == 403
    client.post("/admin/logout", data={"csrf_token": token})
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    bad = client.post(f"/admin/tenants/{tenant.id}/settings", data={"csrf_token": token, "settings": "[1"},
                      follow_redirects=True)
    assert "JSON object" in bad.get_data(as_text=True)
    client.post(f"/admin/tenants/{tenant.id}/settings", data={"csrf_token": token, "settings": '{"tier": "gold"}'})
    assert '"tier": "gold"' in client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    assert _audit_actions(app).count("tenant.updated") == 2


def _set_admin(app, email, **changes):
    from hub.tenancy.models import AdminUser

    with unit_of_work(app.extensions["rop"].db) as uow:
        user = uow.session.scalar(select(AdminUser).where(AdminUser.email == email))
        for name, value in changes.items():
            setattr(user, name, value)
        uow.commit()


def test_disabling_a_user_or_lowering_their_role_takes_effect_on_their_next_request(app, client, admin_kit,
                                                                                    tenant_factory):
    tenant = tenant_factory()
    email = admin_kit.make_admin(app)
    admin_kit.login(client, email)
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    _set_admin(app, email, role="operator")
    response = client.post(f"/admin/tenants/{tenant.id}/clients", data={"csrf_token": token, "name": "x"})
    assert response.status_code == 403  # the session said admin; the user is an operator now
    assert "(operator)" in client.get("/admin/").get_data(as_text=True)
    _set_admin(app, email, status="disabled")
    response = client.get("/admin/tenants/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    _set_admin(app, email, status="active")
    assert client.get("/admin/tenants/").status_code == 302  # the session was dropped: log in again


def test_a_session_ends_after_its_lifetime(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    assert client.get("/admin/").status_code == 200
    app.config["ROP_ADMIN_SESSION_SECONDS"] = 0
    try:
        assert client.get("/admin/").headers["Location"].startswith("/admin/login")
    finally:
        app.config.pop("ROP_ADMIN_SESSION_SECONDS")


def test_admin_pages_are_not_framed_cached_or_given_foreign_scripts(app, client, admin_kit):
    for response in (client.get("/admin/login"), client.get("/admin/tenants/")):
        assert response.headers["X-Frame-Options"] == "DENY"
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp.split(
            "script-src", 1)[1].split(";")[0]
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in client.get("/admin/assets/admin.css").headers.get("Cache-Control", "")
    assert "X-Frame-Options" not in client.get("/healthz").headers
