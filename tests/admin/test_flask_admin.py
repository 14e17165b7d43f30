"""The admin runs on Flask-Admin: its menu, its bundled static files (no CDN), plugin views."""
from __future__ import annotations

import importlib
import re
import sys
import textwrap

import pytest

from hub.app import create_app

PLUGIN = """
    from flask_admin import expose
    from hub import hookimpl
    from rop_admin import AdminView, requires_role

    class ReportsView(AdminView):
        @expose("/")
        def index(self):
            return self.render("rop_admin/message.html", title="Partner reports", message="ok")

        @expose("/purge", methods=("POST",))
        @requires_role("admin")
        def purge(self):
            return "purged"

    @hookimpl
    def register_admin_views(app, admin):
        return [ReportsView(name="Partner reports", endpoint="partner_reports", url="partner-reports")]
"""


def _install_plugin(tmp_path, monkeypatch) -> str:
    root = tmp_path / "site"
    root.mkdir()
    (root / "rop_test_admin_reports.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "rop_test_admin_reports-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rop-test-admin-reports\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rop]\nreports = rop_test_admin_reports\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return "rop_test_admin_reports"


def test_the_admin_is_a_flask_admin_with_the_dashboard_as_its_index(app):
    from flask_admin import Admin

    admin = app.extensions["rop"].extras["admin"]
    assert isinstance(admin, Admin) and admin in app.extensions["admin"]
    assert admin.url == "/admin" and admin.index_view.endpoint == "admin"
    names = {view.name for view in admin._views}
    assert {"Dashboard", "Tenants", "Providers", "Wallets", "Dead letters", "Audit log"} <= names


def test_flask_admins_bundled_bootstrap_is_served_locally_and_no_page_loads_a_cdn(app, client, admin_kit):
    login_page = client.get("/admin/login").get_data(as_text=True)
    admin_kit.login(client, admin_kit.make_admin(app))
    for page in (login_page, client.get("/admin/").get_data(as_text=True),
                 client.get("/admin/tenants/").get_data(as_text=True)):
        assets = re.findall(r'(?:href|src)="([^"]+\.(?:css|js)[^"]*)"', page)
        assert any("bootstrap.min.css" in a for a in assets) and any("jquery" in a for a in assets)
        for asset in assets:
            assert asset.startswith("/admin/"), asset  # served by the hub itself, never a CDN
    anonymous = app.test_client()
    for asset in re.findall(r'(?:href|src)="(/admin/[^"?]+)', login_page):
        assert anonymous.get(asset).status_code == 200, asset


def test_the_menu_is_flask_admins_and_shows_only_after_login(app, client, admin_kit):
    assert "Tenants</a>" not in client.get("/admin/login").get_data(as_text=True)
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/").get_data(as_text=True)
    for label in ("Tenants", "Providers", "Wallets", "Audit log", "Dead letters", "Webhook deliveries"):
        assert re.search(rf">\s*{label}</a>", page), label
    assert "API clients</a>" not in page  # reached from a tenant's page only


@pytest.mark.usefixtures("app")  # empty tables: an earlier test of the worker may have made op@example.com
def test_a_plugins_admin_view_sits_behind_the_login_roles_and_csrf(tmp_path, monkeypatch, config, admin_kit):
    module = _install_plugin(tmp_path, monkeypatch)
    app = create_app(config)
    try:
        app.extensions["rop"].redis.flushdb()
        client = app.test_client()
        response = client.get("/admin/partner-reports/")
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
        assert client.post("/admin/partner-reports/purge").headers["Location"].startswith("/admin/login")
        admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
        assert "Partner reports</a>" in client.get("/admin/").get_data(as_text=True)
        assert client.get("/admin/partner-reports/").status_code == 200
        assert client.post("/admin/partner-reports/purge").status_code == 400  # no CSRF token
        token = admin_kit.csrf_from(client, "/admin/partner-reports/")
        assert client.post("/admin/partner-reports/purge", data={"csrf_token": token}).status_code == 403
    finally:
        app.extensions["rop"].close()
        sys.modules.pop(module, None)


def test_an_operator_is_refused_a_security_action_with_a_page(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    response = client.post(f"/admin/clients/{tenant.client_id}/rotate", data={"csrf_token": token})
    assert response.status_code == 403 and "needs the admin role" in response.get_data(as_text=True)
