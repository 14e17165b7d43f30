"""Who may use the admin UI: the session cookie, the logged-in admin user, roles and CSRF.

Two layers guard ``/admin``:

- every Flask-Admin view derives from :class:`rop_admin.base.AdminView`, whose
  ``is_accessible`` / ``inaccessible_callback`` send a visitor without a session to the
  login page and whose ``_handle_view`` enforces the role a method declares with
  :func:`requires_role`;
- :func:`guard`, an app-wide ``before_request`` hook, does the same login redirect for
  every URL under ``/admin`` (a plugin's plain blueprint too) and refuses every
  non-GET request without a valid CSRF token, before any view runs.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import current_app, redirect, request, session, url_for
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError

from hub.context import CallContext

#: ``viewer`` sees every page and changes nothing; ``operator`` acts; ``admin`` also does security.
ROLES = ("admin", "operator", "viewer")
#: Endpoints reachable without a session: the login form, the one-time invitation and reset
#: links, and the static files.
PUBLIC_ENDPOINTS = frozenset({"admin.login", "admin.static", "rop_admin.static", "admin_users.link"})
#: The only forms a viewer may send (every other POST under /admin is refused with 403).
VIEWER_FORMS = frozenset({"admin.logout", "admin.login", "admin_users.link"})
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


#: Seconds: how precisely a session's last activity is kept (the idle timeout is minutes).
SEEN_PRECISION = 60

def current_admin() -> dict[str, str] | None:
    """The logged-in admin user (``id``, ``email``, ``role``) or None."""
    return session.get("admin")


def has_role(role: str) -> bool:
    """True when the logged-in user may act as ``role`` (``admin`` may do everything, a
    ``viewer`` only look)."""
    user = current_admin()
    if user is None:
        return False
    if role == "viewer":
        return True
    if role == "operator":
        return user["role"] in ("operator", "admin")
    return user["role"] == "admin"


def can_act() -> bool:
    """The logged-in user may change things (pages show their action buttons)."""
    return has_role("operator")


def requires_role(role: str) -> Callable:
    """Mark an exposed view method as needing ``role`` (checked by ``AdminView._handle_view``).

    ``viewer`` is any logged-in user; ``operator`` excludes viewers; ``admin`` excludes
    operators too (security settings)
    """
    if role not in ROLES:
        raise ValueError(f"unknown admin role {role!r}")

    def mark(view: Callable) -> Callable:
        view.admin_role = role  # type: ignore[attr-defined]
        return view

    return mark


def admin_ctx(tenant_id: str | None = None) -> CallContext:
    """The CallContext of the logged-in admin user: audit actor ``admin:<email>``.

    :param tenant_id: the tenant whose data the call touches (None: platform-level).
    """
    user = current_admin()
    if user is None:  # the guard makes this unreachable from a view
        raise RuntimeError("no admin session")
    return CallContext.system(actor=f"admin:{user['email']}", tenant_id=tenant_id)


def check_csrf() -> None:
    """:raise CSRFError: when the form's ``csrf_token`` is missing, forged or expired."""
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as exc:
        raise CSRFError(str(exc)) from None


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def safe_admin_target(target: str | None) -> str | None:
    """``target`` when it is a local /admin path (no open redirect), else None."""
    if not target or not target.startswith("/admin") or target.startswith("//") or "\\" in target:
        return None
    return target


#: An admin session ends this long after its login, whatever happens in between.
DEFAULT_SESSION_SECONDS = 8 * 3600
#: ... and this long after its last request (``ROP_ADMIN_IDLE_MINUTES``).
DEFAULT_IDLE_SECONDS = 30 * 60


def now() -> float:
    """The admin sessions' clock: ``time.time``, or the app's ``ROP_ADMIN_CLOCK`` (tests)."""
    return current_app.config.get("ROP_ADMIN_CLOCK", time.time)()


def _session_is_current() -> bool:
    """The session's user is still an active admin user (their role as it is now), the session
    is younger than ``ROP_ADMIN_SESSION_SECONDS`` and was used within ``ROP_ADMIN_IDLE_SECONDS``:
    disabling a user or changing a role takes effect on their next request, not at their next
    login. A request counts as use unless it is a page's background poll (``*.json``)."""
    user = current_admin()
    if user is None:
        return False
    from hub.db import unit_of_work
    from hub.state import current_state
    from hub.tenancy.service import get_active_admin

    lifetime = current_app.config.get("ROP_ADMIN_SESSION_SECONDS", DEFAULT_SESSION_SECONDS)
    idle = current_app.config.get("ROP_ADMIN_IDLE_SECONDS", DEFAULT_IDLE_SECONDS)
    at = now()
    since = float(user.get("since") or 0)
    if at - since > lifetime or at - float(user.get("seen") or since) > idle:
        return False
    # A short read of its own, closed before the view opens the request's unit of work
    # (some views write first, in their own unit of work, and SQLite has one writer).
    with unit_of_work(current_state().db, readonly=True) as uow:
        row = get_active_admin(uow, user["id"])
        role = row.role if row is not None else None
    if role is None:
        return False
    seen = user.get("seen")
    # Activity (not the pages' background polls) moves ``seen``, at most once a minute: the
    # session is written back to Redis only then, not on every request.
    if not request.path.endswith(".json") and int(at) - int(seen or 0) >= SEEN_PRECISION:
        seen = int(at)
    if role != user["role"] or seen != user.get("seen"):
        session["admin"] = dict(user, role=role, seen=seen)
    return True


def guard(render_refusal: Callable[[str, str, int], Any]) -> Callable[[], Any]:
    """The app-wide before_request hook: login for every /admin URL, CSRF for every form.

    :param render_refusal: ``(title, message, status) -> response`` for a refused form.
    """

    def _guard():
        if not is_admin_path(request.path):
            return None
        unreadable = getattr(session, "unavailable", None)
        if unreadable is not None and request.endpoint not in ("admin.static", "rop_admin.static"):
            raise unreadable  # Redis is away: 503, as for every route that needs it
        if request.endpoint not in PUBLIC_ENDPOINTS and not _session_is_current():
            session.clear()  # ended on the server too: the session store drops it
            return redirect(url_for("admin.login", next=request.path))
        if request.method not in _SAFE_METHODS:
            try:
                check_csrf()
            except CSRFError as exc:
                return render_refusal("Refused", f"The form was refused: {exc.description}", 400)
            if request.endpoint not in VIEWER_FORMS and not can_act():
                return render_refusal("Not allowed", "A viewer can look but not change anything.", 403)
        return None

    return _guard
