"""Admin views: login (argon2, lockout, CSRF), tenants, clients, dead letters, deliveries, audit.

Every state-changing view calls a service use-case with an admin CallContext
(``actor="admin:<email>"``) so the use-case writes the audit log in the same transaction.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from sqlalchemy import select
from wtforms.validators import ValidationError

from hub.context import CallContext
from hub.errors import HubError
from hub.state import current_state
from hub.web import request_uow

bp = Blueprint("rop_admin", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static", static_url_path="/static")

MAX_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
PUBLIC_ENDPOINTS = {"rop_admin.login", "rop_admin.static"}


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session; the cookie is Secure except on plain local hosts."""

    def get_cookie_secure(self, app: Flask) -> bool:
        forced = app.config.get("ROP_ADMIN_COOKIE_SECURE")
        if forced is not None:
            return bool(forced)
        try:
            host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else request.host.split("]")[0] + "]"
        except RuntimeError:
            return True
        return host not in _LOCAL_HOSTS


# -- session, roles, CSRF -------------------------------------------------------------------
def current_admin() -> dict[str, str] | None:
    """The logged-in admin user (``id``, ``email``, ``role``) or None."""
    return session.get("admin")


def admin_ctx() -> CallContext:
    """The CallContext of the logged-in admin user (platform-level, audit actor ``admin:<email>``)."""
    user = current_admin()
    return CallContext.system(actor=f"admin:{user['email']}")


def role_required(role: str) -> Callable:
    """Refuse (403) a view to users without ``role`` (``admin`` is everything)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any):
            user = current_admin()
            if user is None or (role == "admin" and user["role"] != "admin"):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _guard():
    """Login (and CSRF on every non-GET) for every URL under /admin, plugin views included."""
    if not (request.path == "/admin" or request.path.startswith("/admin/")):
        return None
    if request.endpoint in PUBLIC_ENDPOINTS:
        if request.method == "POST":
            _check_csrf()
        return None
    if current_admin() is None:
        return redirect(url_for("rop_admin.login", next=request.path))
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        _check_csrf()
    return None


def _check_csrf() -> None:
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as exc:
        raise CSRFError(str(exc)) from None


@bp.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError):
    return render_template("rop_admin/message.html", title="Refused",
                           message=f"The form was refused: {exc.description}"), 400


@bp.errorhandler(HubError)
def _hub_error(exc: HubError):
    if request.method == "GET":
        return render_template("rop_admin/message.html", title="Cannot show this",
                               message=str(getattr(exc, "detail", None) or exc)), getattr(exc, "status", 400)
    flash(str(getattr(exc, "detail", None) or exc), "error")
    return redirect(request.referrer or url_for("rop_admin.index"))


@bp.app_context_processor
def _template_globals():
    return {"csrf_token": generate_csrf, "admin_user": current_admin()}


# -- login ----------------------------------------------------------------------------------
def _fail_key(email: str) -> str:
    return f"rop:admin:login-failures:{email}"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with e-mail and password; 5 failures lock the e-mail out for 15 minutes."""
    if request.method == "GET":
        return render_template("rop_admin/login.html", next=request.args.get("next", ""))
    from hub.tenancy.models import AdminUser
    from hub.tenancy.service import record_audit, verify_password

    email = (request.form.get("email") or "").strip().lower()
    password = request.form.get("password") or ""
    redis = current_state().redis
    failures = int(redis.get(_fail_key(email)) or 0)
    uow = request_uow()
    if failures >= MAX_FAILURES:
        record_audit(CallContext.system(actor=f"admin:{email}"), uow, "admin.login_locked",
                     target_type="admin_user", target_id=email)
        uow.commit()
        return render_template("rop_admin/login.html", error="Too many failed attempts: "
                               "this account is locked for 15 minutes.", next=""), 429
    user = uow.session.scalar(select(AdminUser).where(AdminUser.email == email))
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    if not ok or user is None or user.status != "active":
        pipe = redis.pipeline()
        pipe.incr(_fail_key(email))
        pipe.expire(_fail_key(email), LOCKOUT_SECONDS)
        pipe.execute()
        record_audit(CallContext.system(actor=f"admin:{email}"), uow, "admin.login_failed",
                     target_type="admin_user", target_id=user.id if user else None)
        uow.commit()
        return render_template("rop_admin/login.html", error="Wrong e-mail or password.", next=""), 401
    redis.delete(_fail_key(email))
    session.clear()
    session["admin"] = {"id": user.id, "email": user.email, "role": user.role}
    record_audit(CallContext.system(actor=f"admin:{email}"), uow, "admin.login",
                 target_type="admin_user", target_id=user.id)
    uow.commit()
    target = request.form.get("next") or ""
    if not target.startswith("/admin") or target.startswith("//"):
        target = url_for("rop_admin.index")
    return redirect(target)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash("not-a-real-password")


@bp.route("/logout", methods=["POST"])
def logout():
    from hub.tenancy.service import record_audit

    uow = request_uow()
    record_audit(admin_ctx(), uow, "admin.logout", target_type="admin_user", target_id=current_admin()["id"])
    uow.commit()
    session.clear()
    return redirect(url_for("rop_admin.login"))


# -- dashboard ------------------------------------------------------------------------------
@bp.route("/")
def index():
    """The dashboard: counts from the services that exist."""
    from hub.bus.deadletters import list_dead_letters
    from hub.tenancy.service import list_tenants

    totals = _wallet_totals()
    uow = request_uow()
    tenants = list_tenants(uow)
    active = sum(1 for t in tenants if t.status == "active")
    bars = [("active", active), ("disabled", len(tenants) - active)]
    peak = max([v for _, v in bars] + [1])
    return render_template("rop_admin/index.html", tenants=len(tenants), bars=bars, peak=peak,
                           dead_letters=len(list_dead_letters(uow, limit=1000)), wallet_totals=totals)


def _wallet_totals(max_tenants: int = 500) -> dict[str, dict[str, int]]:
    """Available and held per currency over every tenant's wallets (through the wallets service).

    Runs in its own unit of work, before the request's read-only session: listing a tenant's
    wallets creates its main wallet on first access (the wallets service's lazy creation).
    """
    try:
        from hub.wallets.service import list_wallets
    except ImportError:
        return {}
    from hub.db import unit_of_work
    from hub.tenancy.service import list_tenants

    totals: dict[str, dict[str, int]] = {}
    with unit_of_work(current_state().db) as uow:
        for tenant in list_tenants(uow)[:max_tenants]:
            cursor = None
            while True:
                rows, cursor = list_wallets(_tenant_ctx(tenant.id), uow, cursor=cursor, limit=200)
                for w in rows:
                    t = totals.setdefault(w.currency, {"available": 0, "held": 0, "wallets": 0})
                    t["available"] += w.available
                    t["held"] += w.held
                    t["wallets"] += 1
                if cursor is None:
                    break
        uow.commit()
    return totals


# -- tenants and clients --------------------------------------------------------------------
@bp.route("/tenants")
def tenants():
    from hub.tenancy.service import list_tenants

    return render_template("rop_admin/tenants.html", tenants=list_tenants(request_uow()))


@bp.route("/tenants/new", methods=["POST"])
@role_required("operator")
def tenant_create():
    from hub.tenancy.service import create_tenant

    uow = request_uow()
    tenant = create_tenant(admin_ctx(), uow, request.form.get("name", ""), request.form.get("slug") or None)
    uow.commit()
    flash(f"Tenant {tenant.name} created.", "ok")
    return redirect(url_for("rop_admin.tenant_detail", tenant_id=tenant.id))


@bp.route("/tenants/<tenant_id>")
def tenant_detail(tenant_id: str):
    from hub.tenancy.scopes import TENANT_SCOPES
    from hub.tenancy.service import get_tenant, list_clients

    uow = request_uow()
    tenant = get_tenant(uow, tenant_id)
    return render_template("rop_admin/tenant.html", tenant=tenant, clients=list_clients(uow, tenant.id),
                           scopes=sorted(TENANT_SCOPES))


@bp.route("/tenants/<tenant_id>/status", methods=["POST"])
@role_required("operator")
def tenant_status(tenant_id: str):
    from hub.tenancy.service import set_tenant_status

    uow = request_uow()
    set_tenant_status(admin_ctx(), uow, tenant_id, request.form.get("status", ""))
    uow.commit()
    return redirect(url_for("rop_admin.tenant_detail", tenant_id=tenant_id))


@bp.route("/tenants/<tenant_id>/clients", methods=["POST"])
@role_required("admin")
def client_create(tenant_id: str):
    """Create a client; its secret appears on this response only (never stored in clear)."""
    from hub.tenancy.service import create_client

    uow = request_uow()
    client, secret = create_client(admin_ctx(), uow, tenant_id, scopes=request.form.getlist("scopes") or None,
                                   name=request.form.get("name", ""))
    uow.commit()
    return _secret_page(client, secret)


@bp.route("/clients/<client_id>/rotate", methods=["POST"])
@role_required("admin")
def client_rotate(client_id: str):
    from hub.tenancy.service import rotate_client_secret

    uow = request_uow()
    client, secret = rotate_client_secret(admin_ctx(), uow, client_id)
    uow.commit()
    return _secret_page(client, secret)


@bp.route("/clients/<client_id>/revoke", methods=["POST"])
@role_required("admin")
def client_revoke(client_id: str):
    from hub.tenancy.service import revoke_client

    uow = request_uow()
    client = revoke_client(admin_ctx(), uow, client_id)
    uow.commit()
    flash(f"Client {client.id} revoked.", "ok")
    return redirect(url_for("rop_admin.tenant_detail", tenant_id=client.tenant_id))


def _secret_page(client, secret: str):
    response = current_app.make_response(render_template("rop_admin/secret.html", client=client, secret=secret))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- bus: dead letters, webhook deliveries --------------------------------------------------
@bp.route("/dead-letters")
def dead_letters():
    from hub.bus.deadletters import list_dead_letters

    show_all = request.args.get("all") == "1"
    return render_template("rop_admin/dead_letters.html", show_all=show_all,
                           letters=list_dead_letters(request_uow(), include_replayed=show_all, limit=200))


@bp.route("/dead-letters/replay", methods=["POST"])
@role_required("operator")
def dead_letters_replay():
    from hub.bus.deadletters import replay_dead_letters
    from hub.tenancy.service import record_audit

    ids = request.form.getlist("ids")
    uow = request_uow()
    letters = replay_dead_letters(current_app._get_current_object(), uow, ids)
    for letter in letters:
        record_audit(admin_ctx(), uow, "dead_letter.replayed", tenant_id=letter.tenant_id,
                     target_type="dead_letter", target_id=letter.id)
    uow.commit()
    flash(f"{len(letters)} dead letter(s) replayed.", "ok")
    return redirect(url_for("rop_admin.dead_letters"))


@bp.route("/deliveries")
def deliveries():
    """A tenant's webhook deliveries (through the bus's tenant-scoped use-case)."""
    from hub.bus.webhooks import list_deliveries
    from hub.tenancy.service import list_tenants

    uow = request_uow()
    all_tenants = list_tenants(uow)
    tenant_id = request.args.get("tenant") or (all_tenants[0].id if all_tenants else None)
    rows = []
    if tenant_id:
        ctx = CallContext.system(actor=admin_ctx().actor, tenant_id=tenant_id)
        rows = list_deliveries(ctx, uow, status=request.args.get("status") or None, limit=200)
    return render_template("rop_admin/deliveries.html", tenants=all_tenants, tenant_id=tenant_id,
                           status=request.args.get("status", ""), deliveries=rows)


@bp.route("/deliveries/<tenant_id>/<delivery_id>")
def delivery_detail(tenant_id: str, delivery_id: str):
    """One delivery with its attempt log."""
    from hub.bus.webhooks import list_attempts

    ctx = CallContext.system(actor=admin_ctx().actor, tenant_id=tenant_id)
    attempts = list_attempts(ctx, request_uow(), delivery_id)
    return render_template("rop_admin/delivery.html", tenant_id=tenant_id, delivery_id=delivery_id,
                           attempts=attempts)


@bp.route("/deliveries/<tenant_id>/<delivery_id>/resend", methods=["POST"])
@role_required("operator")
def delivery_resend(tenant_id: str, delivery_id: str):
    """Send the delivery's event again (a new delivery, through the bus)."""
    from hub.bus.webhooks import resend_delivery
    from hub.tenancy.service import record_audit

    ctx = CallContext.system(actor=admin_ctx().actor, tenant_id=tenant_id)
    uow = request_uow()
    new = resend_delivery(ctx, uow, delivery_id)
    record_audit(ctx, uow, "webhook_delivery.resent", tenant_id=tenant_id, target_type="webhook_delivery",
                 target_id=delivery_id, after={"new_delivery": new.id})
    uow.commit()
    flash(f"Resent as {new.id}.", "ok")
    return redirect(url_for("rop_admin.deliveries", tenant=tenant_id))


# -- wallets (balances, statement, top-up as a ledger posting) ------------------------------
def _tenant_ctx(tenant_id: str) -> CallContext:
    return CallContext.system(actor=admin_ctx().actor, tenant_id=tenant_id)


@bp.route("/wallets")
def wallets():
    """A tenant's wallets and balances (through the wallets service)."""
    from hub.db import unit_of_work
    from hub.tenancy.service import list_tenants
    from hub.wallets.client import wallet_view
    from hub.wallets.service import get_main_wallet, list_wallets

    # The tenant's main wallet is created on first access: that write commits in its own
    # unit of work, before this GET's read-only session opens.
    with unit_of_work(current_state().db) as write:
        all_tenants = list_tenants(write)
        tenant_ids = {t.id for t in all_tenants}
        tenant_id = request.args.get("tenant") or (all_tenants[0].id if all_tenants else None)
        if tenant_id in tenant_ids:
            get_main_wallet(_tenant_ctx(tenant_id), write)
            write.commit()
        tenants_view = [{"id": t.id, "name": t.name} for t in all_tenants]
    rows = []
    if tenant_id:
        found, _ = list_wallets(_tenant_ctx(tenant_id), request_uow(), limit=200)
        rows = [wallet_view(w) for w in found]
    return render_template("rop_admin/wallets.html", tenants=tenants_view, tenant_id=tenant_id, wallets=rows)


@bp.route("/wallets/<tenant_id>/<wallet_id>")
def wallet_detail(tenant_id: str, wallet_id: str):
    """A wallet's balance and statement, and the top-up form (a fresh idempotency key per form)."""
    import uuid

    from hub.wallets.client import get_wallet
    from hub.wallets.service import statement

    uow = request_uow()
    ctx = _tenant_ctx(tenant_id)
    wallet = get_wallet(ctx, uow, wallet_id)
    entries, _ = statement(ctx, uow, wallet_id, limit=500)
    return render_template("rop_admin/wallet.html", tenant_id=tenant_id, wallet=wallet, entries=entries,
                           topup_ref=f"admin-topup-{uuid.uuid4().hex}")


@bp.route("/wallets/<tenant_id>/<wallet_id>/topup", methods=["POST"])
@role_required("operator")
def wallet_topup(tenant_id: str, wallet_id: str):
    """Top up: a ledger posting from the funding account, with a reason (in the audit log)."""
    from hub.errors import ValidationFailed
    from hub.tenancy.service import record_audit
    from hub.wallets.service import topup

    reason = (request.form.get("reason") or "").strip()
    if not reason:
        raise ValidationFailed("a top-up needs a reason", errors={"reason": ["required"]})
    try:
        amount = int(request.form.get("amount", ""))
    except ValueError:
        raise ValidationFailed("the amount must be a whole number of minor units",
                               errors={"amount": ["invalid"]}) from None
    ctx = _tenant_ctx(tenant_id)
    uow = request_uow()
    result = topup(ctx, uow, wallet_id, amount, request.form.get("ref") or "")
    if not result["replayed"]:
        record_audit(ctx, uow, "wallet.topped_up", tenant_id=tenant_id, target_type="wallet",
                     target_id=wallet_id, after={"amount": amount, "currency": result["currency"],
                                                 "journal_id": result["journal_id"], "reason": reason})
    uow.commit()
    flash(f"Topped up {amount} {result['currency']} (journal {result['journal_id']}).", "ok")
    return redirect(url_for("rop_admin.wallet_detail", tenant_id=tenant_id, wallet_id=wallet_id))


# -- provider configurations (credentials write-only, masked, encrypted by the service) -------
def _parse_pairs(text: str, what: str) -> dict[str, Any]:
    """``key=value`` lines into a dict (numbers stay strings: the provider's schema converts)."""
    from hub.errors import ValidationFailed

    out: dict[str, Any] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise ValidationFailed(f"{what}: one key=value per line", errors={what: ["malformed line"]})
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _provider_codes() -> list[str]:
    host = current_state().extras.get("plugins")
    return sorted(getattr(host, "providers", {}) or {})


@bp.route("/providers")
def providers():
    """Provider configurations, credentials masked (the service decrypts only to mask)."""
    from hub.providers.service import list_configs, masked

    rows = [masked(row) for row in list_configs(request_uow())]
    return render_template("rop_admin/providers.html", configs=rows, codes=_provider_codes())


@bp.route("/providers/new", methods=["POST"])
@role_required("admin")
def provider_create():
    """Add a configuration; credentials are encrypted by the providers service, never echoed."""
    from hub.providers.service import add_config
    from hub.tenancy.service import record_audit

    credentials = _parse_pairs(request.form.get("credentials", ""), "credentials")
    settings = _parse_pairs(request.form.get("settings", ""), "settings")
    uow = request_uow()
    row = add_config(uow, request.form.get("provider_code", ""), request.form.get("name", ""),
                     settings=settings, credentials=credentials,
                     tenant_id=request.form.get("tenant_id") or None)
    record_audit(admin_ctx(), uow, "provider_config.created", tenant_id=row.tenant_id,
                 target_type="provider_config", target_id=row.id,
                 after={"provider_code": row.provider_code, "name": row.name, "settings": settings,
                        "credential_keys": sorted(credentials)})
    uow.commit()
    flash(f"Provider configuration {row.id} added.", "ok")
    return redirect(url_for("rop_admin.providers"))


@bp.route("/providers/<config_id>/credentials", methods=["POST"])
@role_required("admin")
def provider_credentials(config_id: str):
    """Replace a configuration's credentials (write-only: the form is never pre-filled)."""
    from hub.providers.service import set_credentials
    from hub.tenancy.service import record_audit

    credentials = _parse_pairs(request.form.get("credentials", ""), "credentials")
    uow = request_uow()
    row = set_credentials(uow, config_id, credentials)
    record_audit(admin_ctx(), uow, "provider_config.credentials_set", tenant_id=row.tenant_id,
                 target_type="provider_config", target_id=row.id, after={"credential_keys": sorted(credentials)})
    uow.commit()
    flash(f"Credentials of {row.id} replaced.", "ok")
    return redirect(url_for("rop_admin.providers"))


@bp.route("/providers/<config_id>/enabled", methods=["POST"])
@role_required("operator")
def provider_enabled(config_id: str):
    """The kill switch: enable or disable a configuration."""
    from hub.providers.service import set_enabled
    from hub.tenancy.service import record_audit

    enabled = request.form.get("enabled") == "1"
    uow = request_uow()
    row = set_enabled(uow, config_id, enabled)
    record_audit(admin_ctx(), uow, f"provider_config.{'enabled' if enabled else 'disabled'}",
                 tenant_id=row.tenant_id, target_type="provider_config", target_id=row.id)
    uow.commit()
    return redirect(url_for("rop_admin.providers"))


# -- audit log (read-only) ------------------------------------------------------------------
@bp.route("/audit")
def audit():
    """The audit log, newest first; filter by action prefix, actor, tenant."""
    from hub.tenancy.models import AuditEntry

    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(300)
    filters = {k: (request.args.get(k) or "").strip() for k in ("action", "actor", "tenant")}
    if filters["action"]:
        query = query.where(AuditEntry.action.startswith(filters["action"]))
    if filters["actor"]:
        query = query.where(AuditEntry.actor.contains(filters["actor"]))
    if filters["tenant"]:
        query = query.where(AuditEntry.tenant_id == filters["tenant"])
    return render_template("rop_admin/audit.html", entries=list(request_uow().session.scalars(query)),
                           filters=filters)


# -- wiring ---------------------------------------------------------------------------------
def init_admin(app: Flask) -> None:
    """Mount the admin UI at ``/admin`` and let plugins add their views."""
    app.session_interface = AdminSessionInterface()
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
    app.before_request(_guard)
    app.register_blueprint(bp)
    try:
        from hub.plugins import register_admin_views  # type: ignore[attr-defined]
    except ImportError:
        register_admin_views = None
    if register_admin_views is not None:
        register_admin_views(app, bp)
