"""Mounting the admin UI: Flask-Admin, its views and menu, the guard, the session cookie."""
from __future__ import annotations

from flask import Blueprint, Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_wtf.csrf import generate_csrf
from rop_admin.base import render_refusal
from rop_admin.dashboard import DashboardView
from rop_admin.security import (
    DEFAULT_IDLE_SECONDS,
    DEFAULT_SESSION_SECONDS,
    can_act,
    current_admin,
    guard,
    is_admin_path,
)
from rop_admin.sessions import RedisSessionInterface

#: The admin's own templates and static files (CSS, JS): served locally at /admin/assets/.
#: Flask-Admin's bundled Bootstrap, jQuery and Font Awesome are served at /admin/static/.
assets = Blueprint("rop_admin", __name__, url_prefix="/admin", template_folder="templates",
                   static_folder="static", static_url_path="/assets")


#: Only the hub's own files; inline style attributes (progress bar widths) but no inline script.
ADMIN_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
             "object-src 'none'")


def _views() -> list:
    from rop_admin import catalog, dead_letters, deliveries, operations, users, views

    return [
        views.TenantsView(name="Tenants", endpoint="admin_tenants", url="tenants"),
        views.ClientsView(name="API clients", endpoint="admin_clients", url="clients"),
        views.ProvidersView(name="Providers", endpoint="admin_providers", url="providers"),
        views.WalletsView(name="Wallets", endpoint="admin_wallets", url="wallets"),
        views.ApprovalsView(name="Approvals", endpoint="admin_approvals", url="approvals"),
        catalog.CatalogView(name="Products", category="Catalog", endpoint="admin_catalog", url="catalog"),
        catalog.PricingView(name="Pricing", category="Catalog", endpoint="admin_pricing", url="pricing"),
        *operations.available_views(),
        dead_letters.DeadLettersView(name="Dead letters", category="Operations", endpoint="admin_dead_letters",
                                     url="dead-letters"),
        deliveries.DeliveriesView(name="Webhook deliveries", category="Operations", endpoint="admin_deliveries",
                                  url="deliveries"),
        views.AuditView(name="Audit log", endpoint="admin_audit", url="audit"),
        users.UsersView(name="Users", endpoint="admin_users", url="users"),
    ]


def _session_settings(app: Flask) -> None:
    """The sessions' idle timeout and lifetime: the app config, else the environment.

    :raise ConfigError: on a malformed value.
    """
    import os

    from hub.config import _number

    env = os.environ
    app.config.setdefault("ROP_ADMIN_IDLE_SECONDS",
                          60 * _number(env, "ROP_ADMIN_IDLE_MINUTES", DEFAULT_IDLE_SECONDS // 60))
    app.config.setdefault("ROP_ADMIN_SESSION_SECONDS",
                          _number(env, "ROP_ADMIN_SESSION_SECONDS", DEFAULT_SESSION_SECONDS))


def init_admin(app: Flask) -> Admin:
    """Mount the admin UI at ``/admin`` and let plugins add their views.

    :return: the ``flask_admin.Admin`` (also at ``app.extensions["rop"].extras["admin"]``).
    """
    _session_settings(app)
    app.session_interface = RedisSessionInterface(app.config["ROP_ADMIN_IDLE_SECONDS"])
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
    app.register_blueprint(assets)
    from rop_admin import formatting

    formatting.register(app)
    admin = Admin(app, name="ROP Hub admin", url="/admin", index_view=DashboardView(),
                  theme=Bootstrap4Theme(base_template="rop_admin/layout.html", fluid=True))
    app.extensions["rop"].extras["admin"] = admin
    app.before_request(guard(render_refusal))

    @app.after_request
    def _admin_headers(response):
        """Admin pages are never framed (clickjacking), cached, or given scripts from elsewhere."""
        from flask import request

        if is_admin_path(request.path):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy", ADMIN_CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            if request.endpoint not in ("admin.static", "rop_admin.static"):
                response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _admin_globals():
        return {"csrf_token": generate_csrf, "admin_user": current_admin(), "can_act": can_act()}

    admin.add_views(*_views())
    from hub.plugins import register_admin_views

    register_admin_views(app, admin)
    return admin
