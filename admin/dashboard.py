"""The admin's index view: the dashboard, and the login and logout forms."""
from __future__ import annotations

from flask import redirect, request, session, url_for
from flask_admin import expose
from rop_admin.base import GuardedIndexView
from rop_admin.security import admin_ctx, current_admin, now, safe_admin_target
from rop_admin.sessions import end, renew

from hub.context import CallContext
from hub.state import current_state
from hub.web import request_uow

MAX_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60


def _fail_key(email: str) -> str:
    return f"rop:admin:login-failures:{email.strip().lower()}"


def lift_lockout(redis, email: str) -> bool:
    """Forget ``email``'s failed logins (``rop admin set-password``); True when it was locked."""
    key = _fail_key(email)
    locked = int(redis.get(key) or 0) >= MAX_FAILURES
    redis.delete(key)
    return locked


class DashboardView(GuardedIndexView):
    """``/admin/``: the dashboard; ``/admin/login`` and ``/admin/logout``."""

    public_methods = frozenset({"login"})

    def __init__(self) -> None:
        super().__init__(name="Dashboard", endpoint="admin", url="/admin")

    @expose("/")
    def index(self):
        """The dashboard: counts and charts from the services' own use-cases."""
        from rop_admin.charts import dashboard_data

        return self.render("rop_admin/index.html", **dashboard_data())

    @expose("/login", methods=("GET", "POST"))
    def login(self):
        """Log in with e-mail and password; 5 failures lock the e-mail out for 15 minutes."""
        if request.method == "GET":
            return self.render("rop_admin/login.html", next=request.args.get("next", ""))
        from hub.tenancy.service import authenticate_admin, record_audit

        email = (request.form.get("email") or "").strip().lower()
        redis = current_state().redis
        uow = request_uow()
        anonymous = CallContext.system(actor=f"admin:{email}")
        if int(redis.get(_fail_key(email)) or 0) >= MAX_FAILURES:
            record_audit(anonymous, uow, "admin.login_locked", target_type="admin_user", target_id=email)
            uow.commit()
            return self.render("rop_admin/login.html", next="", error="Too many failed attempts: "
                               "this account is locked for 15 minutes."), 429
        user = authenticate_admin(uow, email, request.form.get("password") or "")
        if user is None:
            pipe = redis.pipeline()
            pipe.incr(_fail_key(email))
            pipe.expire(_fail_key(email), LOCKOUT_SECONDS)
            pipe.execute()
            record_audit(anonymous, uow, "admin.login_failed", target_type="admin_user", target_id=email)
            uow.commit()
            # the intended page is kept for the next try
            return self.render("rop_admin/login.html", next=safe_admin_target(request.form.get("next")) or "",
                               error="Wrong e-mail or password."), 401
        redis.delete(_fail_key(email))
        session.clear()  # a fresh session (and CSRF token) for the logged-in user,
        renew(session)  # under a new id: a session id known before the login opens nothing
        at = int(now())
        session["admin"] = {"id": user.id, "email": user.email, "role": user.role, "since": at, "seen": at}
        record_audit(anonymous, uow, "admin.login", target_type="admin_user", target_id=user.id)
        uow.commit()
        return redirect(safe_admin_target(request.form.get("next")) or url_for("admin.index"))

    @expose("/logout", methods=("POST",))
    def logout(self):
        from hub.tenancy.service import record_audit

        uow = request_uow()
        record_audit(admin_ctx(), uow, "admin.logout", target_type="admin_user",
                     target_id=current_admin()["id"])
        uow.commit()
        end(session)  # deleted from the session store: a copy of the cookie opens nothing
        return redirect(url_for("admin.login"))
