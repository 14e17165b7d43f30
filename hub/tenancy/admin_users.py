"""Admin users managed from the admin UI: invitations, one-time links, roles, disabling.

There is no e-mail: an invitation or a password reset makes a one-time link that the
inviting admin sees once and passes on. Only the link token's SHA-256 is stored; a link
works once, until :data:`LINK_LIFETIME` has passed, and a newer link for the same user
replaces it. The invitee (or the user resetting) sets a password with the same rules as
``rop admin create-user`` (:func:`hub.tenancy.service.check_admin_password`). Everything is
audited in the caller's unit of work.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import func, select, update

from hub.context import CallContext
from hub.db import UnitOfWork, new_id, utcnow
from hub.errors import Conflict, NotFound, ValidationFailed
from hub.tenancy.models import AdminUser, AdminUserToken
from hub.tenancy.service import _EMAIL, _check_role, _hasher, check_admin_password, record_audit

#: How long an invitation or reset link works.
LINK_LIFETIME = dt.timedelta(hours=72)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def list_admin_users(uow: UnitOfWork) -> list[AdminUser]:
    """Every admin user, by e-mail."""
    return list(uow.session.scalars(select(AdminUser).order_by(AdminUser.email)))


def get_admin_user(uow: UnitOfWork, user_id: str) -> AdminUser:
    user = uow.session.get(AdminUser, user_id)
    if user is None:
        raise NotFound(f"admin user {user_id!r} not found")
    return user


def _issue_link(ctx: CallContext, uow: UnitOfWork, user: AdminUser, purpose: str) -> str:
    """A new one-time link token for ``user``; earlier unused links of the user stop working."""
    now = utcnow()
    uow.session.execute(update(AdminUserToken).where(AdminUserToken.user_id == user.id,
                                                     AdminUserToken.used_at.is_(None),
                                                     AdminUserToken.expires_at > now)
                        .values(expires_at=now))
    token = secrets.token_urlsafe(32)
    uow.session.add(AdminUserToken(id=new_id("aut"), user_id=user.id, purpose=purpose, token_hash=_digest(token),
                                   created_by=ctx.actor or "system", created_at=now,
                                   expires_at=now + LINK_LIFETIME))
    return token


def invite_admin_user(ctx: CallContext, uow: UnitOfWork, email: str, role: str) -> tuple[AdminUser, str]:
    """Create an ``invited`` user (no password: cannot log in) and its invitation link token.

    Inviting an e-mail that is still only invited issues a new link (the old one stops working).
    :raise ValidationFailed: a malformed e-mail or unknown role. :raise Conflict: an existing user.
    """
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ValidationFailed(f"{email!r} is not an e-mail address", errors={"email": ["malformed"]})
    _check_role(role)
    user = uow.session.scalar(select(AdminUser).where(AdminUser.email == email))
    if user is not None and user.status != "invited":
        raise Conflict(f"an admin user {email!r} exists")
    if user is None:
        # An unusable password: nobody knows it, and an invited user cannot log in anyway.
        user = AdminUser(id=new_id("adm"), email=email, role=role, status="invited",
                         password_hash=_hasher.hash(secrets.token_urlsafe(32)))
        uow.session.add(user)
        uow.flush()
    user.role = role
    token = _issue_link(ctx, uow, user, "invite")
    record_audit(ctx, uow, "admin_user.invited", target_type="admin_user", target_id=user.id,
                 after={"email": email, "role": role, "expires_in_hours": LINK_LIFETIME.total_seconds() / 3600})
    return user, token


def reset_link(ctx: CallContext, uow: UnitOfWork, user_id: str) -> tuple[AdminUser, str]:
    """A one-time password-reset link for an active user (the current password keeps working
    until the link is used). :raise ValidationFailed: the user is not active."""
    user = get_admin_user(uow, user_id)
    if user.status != "active":
        raise ValidationFailed(f"{user.email} is {user.status}: only an active user's password can be reset",
                               errors={"status": [user.status]})
    token = _issue_link(ctx, uow, user, "reset")
    record_audit(ctx, uow, "admin_user.reset_link_issued", target_type="admin_user", target_id=user.id)
    return user, token


def open_link(uow: UnitOfWork, token: str) -> tuple[AdminUserToken, AdminUser]:
    """The link and its user when the link still works. :raise NotFound: used, expired, replaced
    or unknown (one message for all: the page does not tell which)."""
    row = uow.session.scalar(select(AdminUserToken).where(AdminUserToken.token_hash == _digest(token or "")))
    user = uow.session.get(AdminUser, row.user_id) if row is not None else None
    wanted = {"invite": "invited", "reset": "active"}
    if row is None or user is None or row.used_at is not None or row.expires_at <= utcnow() \
            or user.status != wanted.get(row.purpose):
        raise NotFound("this link does not work: it was used, it expired or a newer one replaced it")
    return row, user


def use_link(uow: UnitOfWork, token: str, password: str, confirm: str) -> AdminUser:
    """Set the password through a one-time link; the link is used up, an invited user becomes active.

    :raise NotFound: the link does not work. :raise ValidationFailed: the password breaks the rules.
    """
    row, user = open_link(uow, token)
    if password != confirm:
        raise ValidationFailed("the two passwords differ", errors={"confirm": ["differs"]})
    check_admin_password(password)
    # Used up first, in the same statement that checks it is unused: two tabs cannot both use it.
    used = uow.session.execute(update(AdminUserToken).where(AdminUserToken.id == row.id,
                                                            AdminUserToken.used_at.is_(None))
                               .values(used_at=utcnow()))
    if used.rowcount != 1:
        raise NotFound("this link does not work: it was used, it expired or a newer one replaced it")
    user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until = 0, None
    action = "admin_user.invitation_accepted" if row.purpose == "invite" else "admin_user.password_reset"
    user.status = "active"
    record_audit(CallContext.system(actor=f"admin:{user.email}"), uow, action, target_type="admin_user",
                 target_id=user.id, after={"link": row.id})
    return user


def _active_admins(uow: UnitOfWork) -> int:
    return uow.session.scalar(select(func.count()).select_from(AdminUser)
                              .where(AdminUser.role == "admin", AdminUser.status == "active")) or 0


def set_admin_status(ctx: CallContext, uow: UnitOfWork, user_id: str, status: str, *, acting_id: str) -> AdminUser:
    """Disable (their sessions end on their next request) or re-enable an admin user.

    :raise ValidationFailed: an unknown status, disabling yourself, or the last active admin.
    """
    if status not in ("active", "disabled"):
        raise ValidationFailed("status must be active or disabled", errors={"status": ["invalid"]})
    user = get_admin_user(uow, user_id)
    if status == "disabled" and user.id == acting_id:
        raise ValidationFailed("you cannot disable yourself", errors={"status": ["self"]})
    if status == "active" and user.status == "invited":
        raise ValidationFailed(f"{user.email} has not accepted the invitation yet", errors={"status": ["invited"]})
    before = user.status
    if before == status:
        return user
    if status == "disabled" and user.role == "admin" and before == "active" and _active_admins(uow) <= 1:
        raise ValidationFailed("the last active admin cannot be disabled", errors={"status": ["last admin"]})
    user.status = status
    if status == "disabled":  # its unused links stop working too
        uow.session.execute(update(AdminUserToken).where(AdminUserToken.user_id == user.id,
                                                         AdminUserToken.used_at.is_(None))
                            .values(expires_at=utcnow()))
    record_audit(ctx, uow, f"admin_user.{'disabled' if status == 'disabled' else 'enabled'}",
                 target_type="admin_user", target_id=user.id, before={"status": before}, after={"status": status})
    return user


def set_admin_role(ctx: CallContext, uow: UnitOfWork, user_id: str, role: str, *, acting_id: str) -> AdminUser:
    """Change a user's role (it takes effect on their next request).

    :raise ValidationFailed: an unknown role, or changing your own role.
    """
    _check_role(role)
    user = get_admin_user(uow, user_id)
    if user.id == acting_id:
        raise ValidationFailed("you cannot change your own role", errors={"role": ["self"]})
    before = user.role
    if before != role:
        user.role = role
        record_audit(ctx, uow, "admin_user.role_changed", target_type="admin_user", target_id=user.id,
                     before={"role": before}, after={"role": role})
    return user

