"""Use-cases of the tenancy service: tenants, API clients, admin users, audit."""
from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hub.context import CallContext
from hub.db import UnitOfWork, new_id, utcnow
from hub.errors import Conflict, EditConflict, NotFound, ValidationFailed
from hub.tenancy.models import AdminUser, ApiClient, AuditEntry, Tenant
from hub.tenancy.scopes import CLIENT_KINDS, parse_scopes


class _Argon2:
    """The process's argon2id hasher: argon2-cffi's RFC 9106 low-memory profile (t=3,
    64 MiB, p=4). An app made with ``Config.testing`` (the test suite's, which cannot be set
    from the environment) switches the process to argon2's CHEAPEST profile: the suite
    hashes thousands of secrets and checks behaviour, not cost. A hash records its own
    parameters, so one made with either profile verifies under the other."""

    def __init__(self) -> None:
        self.use(cheap=False)

    def use(self, *, cheap: bool) -> None:
        params = profiles.CHEAPEST if cheap else profiles.RFC_9106_LOW_MEMORY
        if getattr(self, "params", None) != params:
            self.params, self._impl = params, PasswordHasher.from_parameters(params)
            self._dummy: str | None = None

    @property
    def dummy(self) -> str:
        """A hash of a random secret to verify against for an unknown e-mail, so that unknown
        and known ones take the same time (no enumeration by timing); made on first use."""
        if self._dummy is None:
            self._dummy = self._impl.hash(secrets.token_urlsafe(16))
        return self._dummy

    def hash(self, secret: str) -> str:
        return self._impl.hash(secret)

    def verify(self, hash_: str, secret: str) -> bool:
        return self._impl.verify(hash_, secret)


_hasher = _Argon2()


def use_cheap_password_hashing(cheap: bool) -> None:
    """argon2's CHEAPEST parameters for this process's new hashes (tests only: create_app
    calls it with ``Config.testing``)."""
    _hasher.use(cheap=cheap)
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# -- audit ------------------------------------------------------------------------------
def record_audit(ctx: CallContext, uow: UnitOfWork, action: str, *, tenant_id: str | None = None,
                 target_type: str | None = None, target_id: str | None = None,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEntry:
    """Write one audit entry in the caller's transaction (it commits with the action)."""
    if ctx.actor:
        actor_type = ctx.actor.split(":", 1)[0] if ":" in ctx.actor else "admin"
        actor = ctx.actor
    elif ctx.client_id:
        actor_type, actor = "client", ctx.client_id
    else:
        actor_type, actor = "system", "system"
    entry = AuditEntry(actor_type=actor_type, actor=actor, action=action,
                       tenant_id=tenant_id if tenant_id is not None else ctx.tenant_id,
                       target_type=target_type, target_id=target_id, before=before, after=after,
                       request_id=ctx.request_id, at=utcnow())
    uow.session.add(entry)
    return entry


def _tenant_view(t: Tenant) -> dict[str, Any]:
    return {"name": t.name, "slug": t.slug, "status": t.status, "settings": t.settings}


def _client_view(c: ApiClient) -> dict[str, Any]:
    return {"tenant_id": c.tenant_id, "kind": c.kind, "scopes": c.scopes, "status": c.status,
            "rate_limit_per_minute": c.rate_limit_per_minute}


# -- tenants ----------------------------------------------------------------------------
def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:64].strip("-")


def create_tenant(ctx: CallContext, uow: UnitOfWork, name: str, slug: str | None = None,
                  settings: dict[str, Any] | None = None) -> Tenant:
    """Create a tenant.

    :raise ValidationFailed: for an empty name or a malformed slug.
    :raise Conflict: when the slug is taken.
    """
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationFailed("a tenant needs a name (1-200 characters)", errors={"name": ["required"]})
    slug = (slug or slugify(name)).strip()
    if not _SLUG.match(slug):
        raise ValidationFailed("the slug must be lowercase letters, digits and dashes (at most 64)",
                               errors={"slug": ["malformed"]})
    if uow.session.scalar(select(Tenant.id).where(Tenant.slug == slug)):
        raise Conflict(f"a tenant with the slug {slug!r} exists")
    tenant = Tenant(id=new_id("ten"), name=name, slug=slug, status="active", settings=settings or {})
    uow.session.add(tenant)
    try:
        uow.flush()
    except IntegrityError:
        raise Conflict(f"a tenant with the slug {slug!r} exists") from None
    record_audit(ctx, uow, "tenant.created", tenant_id=tenant.id, target_type="tenant",
                 target_id=tenant.id, after=_tenant_view(tenant))
    return tenant


def get_tenant(uow: UnitOfWork, ident: str) -> Tenant:
    """A tenant by id or slug. :raise NotFound:"""
    tenant = uow.session.scalar(select(Tenant).where((Tenant.id == ident) | (Tenant.slug == ident)))
    if tenant is None:
        raise NotFound(f"tenant {ident!r} not found")
    return tenant


def list_tenants(uow: UnitOfWork) -> list[Tenant]:
    return list(uow.session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id)))


def update_tenant(ctx: CallContext, uow: UnitOfWork, ident: str, *, name: str | None = None,
                  settings: dict[str, Any] | None = None, expected_version: int | None = None) -> Tenant:
    """Rename a tenant and/or replace its settings (the slug and id never change); audited.

    :param name: the new name (None: unchanged).
    :param settings: the new settings object, replacing the old one (None: unchanged).
    :param expected_version: the tenant's ``version`` as the caller read it (an edit form);
        None: not checked.
    :raise ValidationFailed: an empty name, settings that are not an object.
    :raise NotFound: no such tenant.
    :raise EditConflict: the tenant changed since the caller read it (its version moved on).
    """
    tenant = get_tenant(uow, ident)
    if expected_version is not None and tenant.version != expected_version:
        raise EditConflict(f"tenant {tenant.slug} changed since you opened it (version {expected_version}, "
                           f"now {tenant.version}): nothing was saved", version=tenant.version)
    before = _tenant_view(tenant)
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200:
            raise ValidationFailed("a tenant needs a name (1-200 characters)", errors={"name": ["required"]})
        tenant.name = name
    if settings is not None:
        if not isinstance(settings, dict):
            raise ValidationFailed("settings must be an object", errors={"settings": ["not an object"]})
        tenant.settings = dict(settings)
    after = _tenant_view(tenant)
    if after != before:
        uow.flush_versioned(f"tenant {tenant.slug}")
        record_audit(ctx, uow, "tenant.updated", tenant_id=tenant.id, target_type="tenant",
                     target_id=tenant.id, before=before, after=after)
    return tenant


def set_tenant_status(ctx: CallContext, uow: UnitOfWork, ident: str, status: str) -> Tenant:
    """Enable or disable a tenant; its clients' tokens stop working within seconds."""
    if status not in ("active", "disabled"):
        raise ValidationFailed("status must be active or disabled", errors={"status": ["invalid"]})
    tenant = get_tenant(uow, ident)
    before = _tenant_view(tenant)
    tenant.status = status
    record_audit(ctx, uow, f"tenant.{'enabled' if status == 'active' else 'disabled'}",
                 tenant_id=tenant.id, target_type="tenant", target_id=tenant.id,
                 before=before, after=_tenant_view(tenant))
    return tenant


# -- clients ----------------------------------------------------------------------------
def create_client(ctx: CallContext, uow: UnitOfWork, tenant_ident: str | None, *,
                  scopes: str | list[str] | None = None, name: str = "",
                  kind: str = "tenant", client_id: str | None = None,
                  rate_limit_per_minute: int | None = None) -> tuple[ApiClient, str]:
    """Create an API client and return it with its secret (shown once, stored only hashed).

    :param tenant_ident: the tenant (slug or id) of a ``tenant`` client; None for a
        ``platform`` or ``service`` client, which belong to no tenant.
    :param scopes: None gives the kind's defaults (a tenant's client: read and purchase).
    :param kind: ``tenant``, ``platform`` (the platform's own systems: record top-ups for a
        tenant named per call) or ``service`` (the hub's services).
    :raise ValidationFailed: an unknown kind, a scope the kind may not hold (a tenant's
        client never holds ``wallets:topup``), a tenant given to or missing from the kind,
        a bad rate limit.
    """
    if kind not in CLIENT_KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(CLIENT_KINDS)}", errors={"kind": ["invalid"]})
    try:
        scope_set = parse_scopes(scopes, kind=kind)
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors={"scopes": [str(exc)]}) from None
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ValidationFailed("the rate limit must be at least 1 request per minute",
                               errors={"rate_limit_per_minute": ["must be >= 1"]})
    tenant_id = None
    if kind == "tenant":
        if not tenant_ident:
            raise ValidationFailed("a tenant client needs a tenant", errors={"tenant": ["required"]})
        tenant_id = get_tenant(uow, tenant_ident).id
    elif tenant_ident:
        raise ValidationFailed(f"a {kind} client belongs to no tenant (a platform client names the tenant "
                               "it acts for in the ROP-On-Behalf-Of header of each call)",
                               errors={"tenant": ["not allowed"]})
    secret = secrets.token_urlsafe(32)
    client = ApiClient(id=client_id or new_id("cli"), tenant_id=tenant_id, name=name, kind=kind,
                       secret_hash=_hasher.hash(secret), scopes=" ".join(sorted(scope_set)),
                       status="active", rate_limit_per_minute=rate_limit_per_minute)
    uow.session.add(client)
    uow.flush()
    record_audit(ctx, uow, "client.created", tenant_id=tenant_id, target_type="client",
                 target_id=client.id, after=_client_view(client))
    return client, secret


def get_client(uow: UnitOfWork, client_id: str) -> ApiClient:
    client = uow.session.get(ApiClient, client_id)
    if client is None:
        raise NotFound(f"client {client_id!r} not found")
    return client


def list_clients(uow: UnitOfWork, tenant_id: str | None, *, kind: str | None = None) -> list[ApiClient]:
    """A tenant's clients, oldest first; with ``tenant_id`` None, the clients of ``kind``
    that belong to no tenant (``platform``)."""
    stmt = select(ApiClient).order_by(ApiClient.created_at, ApiClient.id)
    if tenant_id is not None:
        stmt = stmt.where(ApiClient.tenant_id == tenant_id)
    else:
        stmt = stmt.where(ApiClient.tenant_id.is_(None), ApiClient.kind == (kind or "platform"))
    return list(uow.session.scalars(stmt))


def revoke_client(ctx: CallContext, uow: UnitOfWork, client_id: str) -> ApiClient:
    """Revoke a client: its tokens stop working within seconds, its secret for good."""
    client = get_client(uow, client_id)
    before = _client_view(client)
    client.status = "revoked"
    client.revoked_at = utcnow()
    record_audit(ctx, uow, "client.revoked", tenant_id=client.tenant_id, target_type="client",
                 target_id=client.id, before=before, after=_client_view(client))
    return client


def rotate_client_secret(ctx: CallContext, uow: UnitOfWork, client_id: str) -> tuple[ApiClient, str]:
    """Give a client a new secret (returned once); the old one stops working at once, and the
    tokens issued with it within seconds (the client's token version moves on: hub.auth)."""
    client = get_client(uow, client_id)
    if client.status != "active":
        raise Conflict("a revoked client cannot get a new secret")
    if client.kind == "service":
        # The hub's services act in-process (hub.auth.service_context) and their rows hold no
        # usable secret: one would be a token that acts for every tenant (tenants:act-as),
        # buys for it (svc_bulk: transactions:write) and shows in no client list.
        raise Conflict(f"{client.id} is one of the hub's own services: it acts in-process and is never "
                       "given a secret")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = _hasher.hash(secret)
    before = client.token_version
    # Counted by the database (two rotations at once make two versions, never one).
    client.token_version = ApiClient.token_version + 1
    uow.session.flush()
    record_audit(ctx, uow, "client.secret_rotated", tenant_id=client.tenant_id,
                 target_type="client", target_id=client.id, before={"token_version": before},
                 after={"token_version": client.token_version})
    return client, secret


def authenticate_client(uow: UnitOfWork, client_id: str, secret: str, *,
                        before_verify: Callable[[ApiClient], None] | None = None) -> ApiClient | None:
    """The active client whose id and secret match, or None.

    An unknown id is refused at once, without argon2: client ids are not secrets (they are
    random, and appear in logs and tokens), and a flood of made-up ids must not cost a CPU
    second each. For a known id, ``before_verify(client)`` runs first (the token endpoint
    counts the attempt against the client's rate limit there), then argon2's verify, which
    compares in constant time; a wrong secret, a revoked client and a disabled tenant get
    the same None.
    """
    client = uow.session.get(ApiClient, client_id) if client_id else None
    if client is None or client.kind == "service":
        # a service acts in-process (hub.auth.service_context): its row never holds a usable
        # secret, and a deployment whose row was given one before that rule is safe too
        return None
    if before_verify is not None:
        before_verify(client)
    try:
        _hasher.verify(client.secret_hash, secret or "")
    except (VerificationError, InvalidHashError):
        return None
    if client.status != "active":
        return None
    if client.tenant_id is not None:
        tenant = uow.session.get(Tenant, client.tenant_id)
        if tenant is None or tenant.status != "active":
            return None
    return client


def ensure_service_clients(uow: UnitOfWork) -> list[str]:
    """Create the internal services' client rows where missing (no usable secret: they act in-process)."""
    from hub.tenancy.scopes import SERVICE_IDENTITIES, service_client_id

    created = []
    for service, scopes in SERVICE_IDENTITIES.items():
        cid = service_client_id(service)
        if uow.session.get(ApiClient, cid) is None:
            uow.session.add(ApiClient(id=cid, tenant_id=None, name=f"service {service}", kind="service",
                                      secret_hash=_hasher.hash(secrets.token_urlsafe(32)),
                                      scopes=" ".join(sorted(scopes)), status="active"))
            created.append(cid)
    return created


# -- admin users ------------------------------------------------------------------------
def create_admin_user(ctx: CallContext, uow: UnitOfWork, email: str, password: str,
                      role: str = "admin") -> AdminUser:
    """Create an admin-UI login. :raise ValidationFailed: :raise Conflict:"""
    email = (email or "").strip().lower()
    if not _EMAIL.match(email):
        raise ValidationFailed(f"{email!r} is not an e-mail address", errors={"email": ["malformed"]})
    _check_role(role)
    check_admin_password(password)
    if uow.session.scalar(select(func.count()).select_from(AdminUser).where(AdminUser.email == email)):
        raise Conflict(f"an admin user {email!r} exists")
    user = AdminUser(id=new_id("adm"), email=email, password_hash=_hasher.hash(password), role=role)
    uow.session.add(user)
    uow.flush()
    record_audit(ctx, uow, "admin_user.created", target_type="admin_user", target_id=user.id,
                 after={"email": email, "role": role})
    return user


#: Roles of admin users: ``viewer`` sees everything and changes nothing.
ADMIN_ROLES = ("admin", "operator", "viewer")
#: The statuses of an admin user: ``invited`` has no password yet (its invitation link sets one).
ADMIN_STATUSES = ("active", "invited", "disabled")
MIN_PASSWORD_LENGTH = 12


def _check_role(role: str) -> None:
    if role not in ADMIN_ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ADMIN_ROLES)}", errors={"role": ["invalid"]})


def check_admin_password(password: str) -> None:
    """The password rules of every admin user (CLI, invitation, reset). :raise ValidationFailed:"""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
                               errors={"password": ["too short"]})


def set_admin_password(ctx: CallContext, uow: UnitOfWork, email: str, password: str) -> AdminUser:
    check_admin_password(password)
    user = uow.session.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"admin user {email!r} not found")
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    record_audit(ctx, uow, "admin_user.password_set", target_type="admin_user", target_id=user.id)
    return user


def authenticate_admin(uow: UnitOfWork, email: str, password: str) -> AdminUser | None:
    """The active admin user with this e-mail and password, else None.

    An unknown e-mail is checked against a dummy hash, so it takes as long as a known one
    (no e-mail enumeration by timing). Records ``last_login_at`` (the caller commits).
    """
    user = uow.session.scalar(select(AdminUser).where(AdminUser.email == (email or "").strip().lower()))
    ok = verify_password(user.password_hash if user else _hasher.dummy, password or "")
    if not ok or user is None or user.status != "active":
        return None
    user.last_login_at = utcnow()
    return user


def get_active_admin(uow: UnitOfWork, user_id: str) -> AdminUser | None:
    """The admin user ``user_id`` if it exists and is active (an admin session checks it per request)."""
    user = uow.session.get(AdminUser, user_id)
    return user if user is not None and user.status == "active" else None


def list_audit(uow: UnitOfWork, *, action_prefix: str | None = None, actor: str | None = None,
               tenant_id: str | None = None, limit: int = 300) -> list[AuditEntry]:
    """Audit entries, newest first: actions starting with ``action_prefix``, actors containing
    ``actor``, one tenant's. Read-only: nothing edits or deletes the audit log."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 1000)))
    if action_prefix:
        stmt = stmt.where(AuditEntry.action.startswith(action_prefix, autoescape=True))
    if actor:
        stmt = stmt.where(AuditEntry.actor.contains(actor, autoescape=True))
    if tenant_id:
        stmt = stmt.where(AuditEntry.tenant_id == tenant_id)
    return list(uow.session.scalars(stmt))


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of a password against its argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
