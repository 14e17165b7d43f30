"""The base of every admin view: Flask-Admin's ``BaseView`` behind the admin login.

Views call the owning service's use-cases (services own their tables), so they are
``BaseView`` subclasses with ``@expose`` methods, not ``ModelView``s over tables.
A plugin adds its own pages by subclassing :class:`AdminView` and returning instances
from the ``register_admin_views`` hook.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, flash, jsonify, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView
from rop_admin.security import current_admin, has_role, safe_admin_target

from hub.errors import HubError


class _Guarded:
    """Login, roles and error pages shared by :class:`AdminView` and the dashboard."""

    #: Method names reachable without a session (the login form).
    public_methods: frozenset[str] = frozenset()

    #: The view's own scripts (from admin/static), after the shared ones.
    scripts: tuple[str, ...] = ()

    @property
    def extra_css(self) -> list[str]:  # type: ignore[override]
        return [url_for("rop_admin.static", filename="admin.css")]

    @property
    def extra_js(self) -> list[str]:  # type: ignore[override]
        return [url_for("rop_admin.static", filename=name) for name in ("confirm.js", "select-all.js", *self.scripts)]

    def is_accessible(self) -> bool:
        """Only a logged-in admin user sees (and reaches) the view."""
        return current_admin() is not None

    def inaccessible_callback(self, name: str, **kwargs: Any):
        """A visitor without a session goes to the login page, and comes back after."""
        return redirect(url_for("admin.login", next=request.path))

    def _handle_view(self, name: str, **kwargs: Any):
        if name in self.public_methods:
            return None
        if not self.is_accessible():
            return self.inaccessible_callback(name, **kwargs)
        role = getattr(getattr(self, name, None), "admin_role", None)
        if role and not has_role(role):
            return self.message("Not allowed", f"This needs the {role} role.", 403)
        return None

    def _run_view(self, fn, *args: Any, **kwargs: Any):
        # Flask-Admin's own _run_view retries a view that raised TypeError with other
        # arguments; a view that moves money runs once, and its errors surface.
        try:
            return fn(self, *args, **kwargs)
        except HubError as exc:
            return self.hub_error(exc)

    def message(self, title: str, message: str, status: int = 200):
        """A page with one message (and an HTTP status)."""
        return self.render("rop_admin/message.html", title=title, message=message), status

    def hub_error(self, exc: HubError):
        """A domain error: a page for a GET; a flashed message and a way back for a form."""
        detail = str(getattr(exc, "detail", None) or exc)
        if request.path.endswith(".json"):  # what the page scripts poll
            return jsonify({"title": exc.title, "detail": detail}), getattr(exc, "status", 400)
        if request.method == "GET":
            return self.message("Cannot show this", detail, getattr(exc, "status", 400))
        flash(detail, "error")
        back = (safe_admin_target(request.form.get("back")) or safe_admin_target(_local_referrer())
                or url_for("admin.index"))
        return redirect(back)

    def confirm_page(self, title: str, rows: list[tuple[str, Any]], *, fields: dict[str, Any], cancel: str,
                     confirm_label: str = "Confirm", warning: str | None = None):
        """The page between a form and its action: what will happen (``rows``: label, value),
        Confirm — the same form again with ``confirm=1`` (a POST with its CSRF token) — or
        Cancel (back to ``cancel``). Nothing has happened yet."""
        return self.render("rop_admin/confirm.html", title=title, rows=rows, fields=fields, cancel=cancel,
                           action=request.path, confirm_label=confirm_label, warning=warning)


def confirmed() -> bool:
    """True when the POST comes from a confirmation page's Confirm button."""
    return request.form.get("confirm") == "1"


def _local_referrer() -> str | None:
    referrer = request.referrer or ""
    host = request.host_url.rstrip("/")
    return referrer[len(host):] if referrer.startswith(host + "/") else None


class AdminView(_Guarded, BaseView):
    """A page of the admin UI, behind the login; mark writes with ``requires_role``."""


class GuardedIndexView(_Guarded, AdminIndexView):
    """The index view (dashboard) behind the same guard."""


def render_refusal(title: str, message: str, status: int):
    """Render a refusal (a form without its CSRF token) through the admin's index view."""
    admin = current_app.extensions["rop"].extras["admin"]
    return admin.index_view.render("rop_admin/message.html", title=title, message=message), status
