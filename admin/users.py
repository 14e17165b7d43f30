"""Admin users in the admin UI: the list, invitations, one-time reset links, roles, disabling.

An admin invites a user with a role and sees the one-time invitation link once (there is
no e-mail); the invitee opens it, logged out, and sets a password (the rules of
``rop admin create-user``). A reset link works the same way; using it lifts a login lockout
and ends the user's open sessions (as ``rop admin set-password`` does). Disabling a user ends
their sessions at once (deleted from the session store; ``rop_admin.security`` also checks the
user on every request, so a role change applies from their next request).
The use-cases (``hub.tenancy.admin_users``) audit every change.
"""
from __future__ import annotations

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from rop_admin.base import AdminView
from rop_admin.security import admin_ctx, current_admin, requires_role
from rop_admin.sessions import end_user_sessions

from hub.db import unit_of_work
from hub.errors import HubError
from hub.state import current_state
from hub.web import request_uow


def _link_page(view: AdminView, user, token: str, purpose: str):
    """The one page that shows a one-time link: never cached."""
    from hub.tenancy.admin_users import LINK_LIFETIME

    link = url_for("admin_users.link", token=token, _external=True)
    response = current_app.make_response(view.render(
        "rop_admin/user_link.html", user=user, link=link, purpose=purpose,
        hours=int(LINK_LIFETIME.total_seconds() // 3600)))
    response.headers["Cache-Control"] = "no-store"
    return response


class UsersView(AdminView):
    """``/admin/users/``: who may log in, with which role; admins invite, reset, disable."""

    public_methods = frozenset({"link"})

    @expose("/")
    def index(self):
        from hub.tenancy.admin_users import list_admin_users
        from hub.tenancy.service import ADMIN_ROLES

        return self.render("rop_admin/users.html", users=list_admin_users(request_uow()), roles=ADMIN_ROLES,
                           me=current_admin()["id"])

    @expose("/invite", methods=("POST",))
    @requires_role("admin")
    def invite(self):
        """Invite a user: the page shows the one-time invitation link once."""
        from hub.tenancy.admin_users import invite_admin_user

        uow = request_uow()
        user, token = invite_admin_user(admin_ctx(), uow, request.form.get("email", ""),
                                        request.form.get("role", ""))
        uow.commit()
        return _link_page(self, user, token, "invite")

    @expose("/<user_id>/reset", methods=("POST",))
    @requires_role("admin")
    def reset(self, user_id: str):
        """A one-time password-reset link for the user, shown once."""
        from hub.tenancy.admin_users import reset_link

        uow = request_uow()
        user, token = reset_link(admin_ctx(), uow, user_id)
        uow.commit()
        return _link_page(self, user, token, "reset")

    @expose("/<user_id>/status", methods=("POST",))
    @requires_role("admin")
    def status(self, user_id: str):
        """Disable (their sessions end now) or enable a user."""
        from hub.tenancy.admin_users import set_admin_status

        uow = request_uow()
        user = set_admin_status(admin_ctx(), uow, user_id, request.form.get("status", ""),
                                acting_id=current_admin()["id"])
        uow.commit()
        ended = end_user_sessions(current_state().redis, user.id) if user.status == "disabled" else 0
        flash(f"{user.email} is {user.status}" + (f"; {ended} session(s) ended" if ended else "") + ".", "success")
        return redirect(url_for(".index"))

    @expose("/<user_id>/role", methods=("POST",))
    @requires_role("admin")
    def role(self, user_id: str):
        """Change a user's role (from their next request)."""
        from hub.tenancy.admin_users import set_admin_role

        uow = request_uow()
        user = set_admin_role(admin_ctx(), uow, user_id, request.form.get("role", ""),
                              acting_id=current_admin()["id"])
        uow.commit()
        flash(f"{user.email} is now {user.role}.", "success")
        return redirect(url_for(".index"))

    @expose("/link/<token>", methods=("GET", "POST"))
    def link(self, token: str):
        """The one-time link (no session needed): set a password; the link is used up, a login
        lockout is lifted and the user's open sessions end (a reset is often about a lost or
        shared password)."""
        from rop_admin.dashboard import lift_lockout

        from hub.tenancy.admin_users import open_link, use_link

        if request.method == "GET":
            try:
                row, user = open_link(request_uow(), token)
            except HubError as exc:
                return self.message("Link not valid", str(exc.detail or exc), 404)
            return self.render("rop_admin/user_password.html", token=token, email=user.email, purpose=row.purpose)
        with unit_of_work(current_state().db) as uow:
            try:
                user = use_link(uow, token, request.form.get("password") or "", request.form.get("confirm") or "")
            except HubError as exc:
                status = getattr(exc, "status", 400)
                if status == 404:
                    return self.message("Link not valid", str(exc.detail or exc), 404)
                row, who = open_link(uow, token)
                return self.render("rop_admin/user_password.html", token=token, email=who.email,
                                   purpose=row.purpose, error=str(exc.detail or exc)), status
            uow.commit()
            email, user_id = user.email, user.id
        redis = current_state().redis
        lift_lockout(redis, email)
        end_user_sessions(redis, user_id)
        flash(f"Password set for {email}: log in with it.", "success")
        return redirect(url_for("admin.login"))
