"""Use-cases of the providers service (configurations, calls, callbacks, key rotation)."""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog
from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import select

from hub.context import CallContext
from hub.db import UnitOfWork, new_id, utcnow
from hub.errors import Conflict, NotFound, ValidationFailed
from hub.providers import crypto, health
from hub.providers.contract import (
    Provider,
    ProviderConfigView,
    ProviderResult,
    State,
    credential_fields,
    setting_fields,
)
from hub.providers.http import allow_own_callbacks, watch_transport
from hub.providers.models import ProviderCallback, ProviderConfig, ProviderConfigTenant

log = structlog.get_logger("hub.providers")
#: the longest ``ref_id`` a callback record keeps (``provider_callbacks.ref_id``)
REF_ID_LENGTH = 128


def _state():
    return current_app.extensions["rop"]


def _host():
    return _state().extras["plugins"]


def _keys() -> tuple[str, ...]:
    return _state().config.encryption_keys


def hub_url() -> str | None:
    """The hub's address as providers reach it (:meth:`hub.config.Config.own_url`; a test may
    set ``extras["public_url"]``). None: unknown (ROP_PUBLIC_URL not set outside the
    embedded defaults)."""
    state = _state()
    base = state.extras.get("public_url") or state.config.own_url()
    return str(base).rstrip("/") if base else None


def callback_url(config: ProviderConfig) -> str | None:
    """Where a provider posts callbacks for this configuration (None: the hub's address is
    unknown). Calls to it are exempt from the private-address guard
    (:func:`hub.providers.http.allow_own_callbacks`): it is the hub itself."""
    base = hub_url()
    if base is None:
        return None
    allow_own_callbacks(base)
    return f"{base}/callbacks/{config.provider_code}/{config.id}"


# -- configurations -------------------------------------------------------------------------
def _changed(uow: UnitOfWork) -> None:
    """Every process reloads what it cached of the configurations (hub.cache, namespace
    ``providers``: the configurations a tenant may use) once ``uow`` commits."""
    from hub.cache import refcache

    refcache().bump(uow, "providers")


def _field_message(messages: Any) -> str:
    texts = messages if isinstance(messages, list) else [messages]
    return ", ".join("required" if str(t) == "Missing data for required field." else str(t) for t in texts)


def settings_problems(cls: type[Provider], settings: Mapping[str, Any],
                      credentials: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a configuration's settings and credentials, by field name
    (``{"api_key": "required", "foo": "unknown setting (known: base_url, …)"}``); empty when
    nothing is. Credentials and settings are kept apart as the plugin declares them."""
    known_settings, known_credentials = setting_fields(cls), credential_fields(cls)
    problems: dict[str, str] = {}
    for name in settings:
        if name in known_credentials:
            problems[name] = "a credential, not a setting (give it with the credentials)"
        elif name not in known_settings:
            problems[name] = f"unknown setting (known: {', '.join(known_settings) or 'none'})"
    for name in credentials:
        if name in known_settings:
            problems[name] = "a setting, not a credential (give it with the settings)"
        elif name not in known_credentials:
            problems[name] = f"unknown credential (known: {', '.join(known_credentials) or 'none'})"
    given = {k: v for k, v in {**settings, **credentials}.items() if k not in problems}
    try:
        cls.settings_schema().load(given, partial=tuple(problems))
    except ValidationError as exc:
        messages = exc.normalized_messages()
        for name in sorted(messages):
            problems.setdefault(str(name), _field_message(messages[name]))
    return problems


def _validate(cls: type[Provider], settings: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
    """:raise ValidationFailed: naming each field that is wrong and why."""
    problems = settings_problems(cls, settings, credentials)
    if problems:
        raise ValidationFailed(f"provider {cls.code}: " + "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())),
                               errors={k: [v] for k, v in problems.items()})


def _with_callback_secret(cls: type[Provider], settings: Mapping[str, Any], credentials: dict[str, Any],
                          current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``credentials`` with the provider's callback secret (``callback_secret_setting``):
    the one given, else the configuration's ``current`` one, else a new random one. No
    plugin has a default secret: each configuration gets its own."""
    setting = cls.callback_secret_setting
    if not setting or credentials.get(setting) or settings.get(setting):
        return credentials
    kept = (current or {}).get(setting)
    return {**credentials, setting: kept or secrets.token_urlsafe(32)}


def resolve_tenant(uow: UnitOfWork, tenant: str | None) -> str | None:
    """The id of the tenant named by ``tenant`` (its slug or id); None for None or empty.

    :raise ValidationFailed: no such tenant.
    """
    from hub.tenancy.service import get_tenant

    if tenant is None or not str(tenant).strip():
        return None
    try:
        return get_tenant(uow, str(tenant).strip()).id
    except NotFound:
        raise ValidationFailed(f"no tenant {str(tenant).strip()!r} (give a tenant's slug or id; rop tenants list)",
                               errors={"tenant": ["unknown tenant"]}) from None


def add_config(uow: UnitOfWork, provider_code: str, name: str, *, settings: Mapping[str, Any] | None = None,
               credentials: Mapping[str, Any] | None = None, tenant_id: str | None = None,
               enabled: bool = True, all_tenants: bool = True) -> ProviderConfig:
    """Create a provider configuration (platform-wide when ``tenant_id`` is None; else that
    tenant's own: ``tenant_id`` is its id or slug, an unknown one is refused).

    When the provider signs its callbacks (``callback_secret_setting``) and no secret is
    given, a random one is generated and stored with the credentials (encrypted);
    :func:`callback_secret` reads it for the operator to give the provider.
    """
    cls = _host().provider_class(provider_code)
    tenant_id = resolve_tenant(uow, tenant_id)
    settings = dict(settings or {})
    credentials = _with_callback_secret(cls, settings, dict(credentials or {}))
    _validate(cls, settings, credentials)
    row = ProviderConfig(id=new_id("pcf"), provider_code=provider_code, tenant_id=tenant_id, name=name,
                         settings=settings, credentials_encrypted=crypto.encrypt(_keys(), credentials),
                         enabled=enabled, all_tenants=all_tenants if tenant_id is None else False)
    uow.session.add(row)
    uow.session.flush()
    _changed(uow)
    return row


def get_config(uow: UnitOfWork, config_id: str) -> ProviderConfig:
    row = uow.session.get(ProviderConfig, config_id)
    if row is None:
        raise NotFound(f"no provider configuration {config_id}")
    return row


def list_configs(uow: UnitOfWork, *, tenant_id: str | None = None) -> list[ProviderConfig]:
    query = select(ProviderConfig).order_by(ProviderConfig.created_at)
    if tenant_id is not None:
        query = query.where(ProviderConfig.tenant_id == tenant_id)
    return list(uow.session.scalars(query))


def set_credentials(uow: UnitOfWork, config_id: str, credentials: Mapping[str, Any],
                    settings: Mapping[str, Any] | None = None) -> ProviderConfig:
    """Replace a configuration's credentials. The callback secret, when the new credentials
    do not name it, stays as it was (a provider keeps signing with it), or is generated
    where the configuration had none."""
    row = get_config(uow, config_id)
    cls = _host().provider_class(row.provider_code)
    new_settings = {**row.settings, **(settings or {})}
    credentials = _with_callback_secret(cls, new_settings, dict(credentials), _decrypted(row))
    _validate(cls, new_settings, credentials)
    row.credentials_encrypted = crypto.encrypt(_keys(), dict(credentials))
    row.settings = new_settings
    _changed(uow)
    return row


def set_enabled(uow: UnitOfWork, config_id: str, enabled: bool) -> ProviderConfig:
    """The kill switch: a disabled configuration gets no new purchase, inquiry, catalog or
    balance call from its commit (the driver's claim reads it as committed; a purchase claimed
    before it may still leave). Purchases already sent there are not abandoned: their status
    checks still go to the provider and its callbacks are still received (an unknown
    outcome must be asked, never decided by switching the provider off)."""
    row = get_config(uow, config_id)
    if enabled and row.retired_at is not None:
        raise Conflict(f"{config_id} is retired: it takes no new purchases again (add a new configuration)")
    row.enabled = enabled
    _changed(uow)
    return row


def enable_for_tenant(uow: UnitOfWork, config_id: str, tenant_id: str, enabled: bool = True) -> str:
    """Enable (or disable) a platform-wide configuration for one tenant (its id or slug; an
    unknown one is refused); turns off ``all_tenants``. Returns the tenant's id."""
    row = get_config(uow, config_id)
    tenant_id = resolve_tenant(uow, tenant_id) or ""
    if not tenant_id:
        raise ValidationFailed("name a tenant", errors={"tenant": ["required"]})
    if row.tenant_id is not None:
        raise Conflict("a tenant's own configuration serves only that tenant")
    row.all_tenants = False
    _changed(uow)
    link = uow.session.scalar(select(ProviderConfigTenant).where(
        ProviderConfigTenant.config_id == config_id, ProviderConfigTenant.tenant_id == tenant_id))
    if enabled and link is None:
        uow.session.add(ProviderConfigTenant(config_id=config_id, tenant_id=tenant_id))
    elif not enabled and link is not None:
        uow.session.delete(link)
    return tenant_id


def config_state(row: ProviderConfig) -> str:
    """``on``, ``off`` (the kill switch) or ``retired`` (removed while it had history)."""
    if row.retired_at is not None:
        return "retired"
    return "on" if row.enabled else "off"


def config_history(ctx: CallContext, uow: UnitOfWork, config_id: str) -> dict[str, int]:
    """What the hub holds about a configuration: its transactions, attempts, inquiries and
    callbacks, counted. Any of them: it has history."""
    from sqlalchemy import func

    from hub.transactions.client import history_of_config

    history = history_of_config(ctx, uow, config_id)
    history["callbacks"] = int(uow.session.scalar(select(func.count()).select_from(ProviderCallback)
                                                  .where(ProviderCallback.config_id == config_id)))
    return history


def remove_config(ctx: CallContext, uow: UnitOfWork, config_id: str) -> tuple[str, dict[str, int]]:
    """Remove a configuration, audited. One with history (:func:`config_history`) is
    retired, not deleted: switched off for good, it takes no new purchases, while the
    purchases already sent there keep their status checks and callbacks. One without history
    is deleted (with its tenant enablements).

    :return: ``("retired" | "deleted", history)``.
    :raise Conflict: it is retired already.
    """
    from hub.tenancy.service import record_audit

    # Locked first: a claim of purchases routed to it (hub.transactions.driver, which
    # share-locks the row) is committed before its history is counted, or waits for this.
    row = uow.session.get(ProviderConfig, config_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no provider configuration {config_id}")
    if row.retired_at is not None:
        raise Conflict(f"{config_id} is retired already")
    history = config_history(ctx, uow, config_id)
    before = {"provider_code": row.provider_code, "name": row.name, "tenant_id": row.tenant_id,
              "state": config_state(row)}
    if any(history.values()):
        row.retired_at, row.enabled, action = utcnow(), False, "retired"
    else:
        for link in uow.session.scalars(select(ProviderConfigTenant).where(ProviderConfigTenant.config_id == config_id)):
            uow.session.delete(link)
        uow.session.delete(row)
        action = "deleted"
    record_audit(ctx, uow, f"provider_config.{action}", tenant_id=row.tenant_id, target_type="provider_config",
                 target_id=config_id, before=before, after={"state": action, "history": history})
    _changed(uow)
    return action, history


def open_to(tenant_id: str, *, owner: str | None, all_tenants: bool, linked: bool) -> bool:
    """Whether a configuration takes ``tenant_id``'s purchases: its own (``owner``), or a
    platform-wide one (no owner) for every tenant or ``linked`` to this one."""
    return owner == tenant_id if owner is not None else (all_tenants or linked)


def usable_now(uow: UnitOfWork, pairs) -> set[tuple[str, str]]:
    """Of ``(config_id, tenant_id)`` pairs, those whose configuration exists, is switched on,
    not retired and :func:`open_to` the tenant, as committed now: one statement, every row of
    these ids share-locked until ``uow`` ends, a switched-off one too (a removal waits for it:
    :func:`remove_config` then sees the attempts recorded meanwhile)."""
    pairs = set(pairs)
    if not pairs:
        return set()
    rows = uow.session.execute(
        select(ProviderConfig.id, ProviderConfig.tenant_id, ProviderConfig.all_tenants, ProviderConfig.enabled,
               ProviderConfig.retired_at, ProviderConfigTenant.tenant_id)
        .outerjoin(ProviderConfigTenant, ProviderConfigTenant.config_id == ProviderConfig.id)
        .where(ProviderConfig.id.in_(sorted({config_id for config_id, _ in pairs})))
        .with_for_update(read=True, key_share=True, of=ProviderConfig)).all()
    owners: dict[str, tuple[str | None, bool]] = {}
    linked: set[tuple[str, str]] = set()
    for config_id, owner, all_tenants, enabled, retired_at, link_tenant in rows:
        if enabled and retired_at is None:
            owners[config_id] = (owner, all_tenants)
            if link_tenant is not None:
                linked.add((config_id, link_tenant))
    return {(config_id, tenant_id) for config_id, tenant_id in pairs if config_id in owners and open_to(
        tenant_id, owner=owners[config_id][0], all_tenants=owners[config_id][1],
        linked=(config_id, tenant_id) in linked)}


def usable_configs(uow: UnitOfWork, tenant_id: str, *, provider_codes: list[str] | None = None,
                   healthy_only: bool = True) -> list[ProviderConfig]:
    """The configurations a tenant's transactions may use now: enabled, enabled for this
    tenant (its own, or platform-wide for all or for it), provider installed, and (with
    ``healthy_only``) neither the configuration's shared breaker nor this tenant's on it open."""
    host = _host()
    linked = set(uow.session.scalars(select(ProviderConfigTenant.config_id).where(
        ProviderConfigTenant.tenant_id == tenant_id)))
    rows = []
    for row in uow.session.scalars(select(ProviderConfig).where(ProviderConfig.enabled.is_(True),
                                                                ProviderConfig.retired_at.is_(None))
                                   .order_by(ProviderConfig.created_at)):
        if row.provider_code not in host.providers:
            continue
        if provider_codes is not None and row.provider_code not in provider_codes:
            continue
        if not open_to(tenant_id, owner=row.tenant_id, all_tenants=row.all_tenants, linked=row.id in linked):
            continue
        if healthy_only and health.is_open(_state().redis, row.id, tenant_id):
            continue
        rows.append(row)
    return rows


def _decrypted(row: ProviderConfig) -> dict[str, Any]:
    try:
        return crypto.decrypt(_keys(), row.credentials_encrypted)
    except crypto.CredentialsError:
        return {}


def callback_secret(row: ProviderConfig) -> str | None:
    """The secret this configuration's callbacks are signed with (None: the provider signs
    none, or the configuration has none), for the operator to give the provider. Never
    log it."""
    setting = _host().provider_class(row.provider_code).callback_secret_setting
    if not setting:
        return None
    return _decrypted(row).get(setting) or row.settings.get(setting) or None


def ensure_callback_secret(uow: UnitOfWork, config_id: str) -> bool:
    """Give a configuration whose provider signs callbacks, and which has no secret (made
    before the hub generated them), a generated one, its other credentials kept. True when
    one was added."""
    row = get_config(uow, config_id)
    if not _host().provider_class(row.provider_code).callback_secret_setting or callback_secret(row):
        return False
    set_credentials(uow, config_id, _decrypted(row))
    return True


def masked(row: ProviderConfig) -> dict[str, Any]:
    """A configuration as any API/CLI may show it: credentials masked."""
    try:
        creds = crypto.mask(crypto.decrypt(_keys(), row.credentials_encrypted))
    except crypto.CredentialsError:
        creds = {"error": "cannot decrypt"}
    return {"id": row.id, "provider_code": row.provider_code, "tenant_id": row.tenant_id,
            "name": row.name, "enabled": row.enabled, "all_tenants": row.all_tenants,
            "state": config_state(row), "retired_at": row.retired_at.isoformat() if row.retired_at else None,
            "settings": row.settings, "credentials": creds, "callback_url": callback_url(row),
            "health": health.health(_state().redis, row.id)}


def rotate_keys(uow: UnitOfWork) -> int:
    """Re-encrypt every configuration's credentials under the newest key; returns the count."""
    count = 0
    for row in uow.session.scalars(select(ProviderConfig)):
        if row.credentials_encrypted:
            row.credentials_encrypted = crypto.rotate(_keys(), row.credentials_encrypted)
            count += 1
    return count


# -- calling providers ----------------------------------------------------------------------
def provider_for(row: ProviderConfig) -> Provider:
    """An instance of the configuration's provider, with decrypted credentials."""
    return PreparedConfig(row).provider()


class PreparedConfig:
    """A configuration read once, its credentials decrypted once, for many calls with no
    database session (a batch's purchases, :func:`call_prepared`). Every call still gets a
    provider instance of its own, with copies of the settings and credentials, as
    :func:`provider_for` gives. Build it in an app context (it reads the keys and the
    public URL there); use it from any thread."""

    def __init__(self, row: ProviderConfig):
        self.id, self.provider_code, self.tenant_id = row.id, row.provider_code, row.tenant_id
        self.enabled = row.enabled and row.retired_at is None
        self._settings = dict(row.settings)
        self._credentials = crypto.decrypt(_keys(), row.credentials_encrypted)
        self.callback_url = callback_url(row)
        self._allow_private = _state().config.webhook_allow_private
        self._cls = _host().provider_class(row.provider_code)

    def provider(self) -> Provider:
        return self._cls(ProviderConfigView(
            id=self.id, provider_code=self.provider_code, tenant_id=self.tenant_id,
            settings=dict(self._settings), credentials=dict(self._credentials), callback_url=self.callback_url,
            allow_private=self._allow_private))


def call_provider(uow: UnitOfWork, config_id: str, operation: str, request: Any = None, *,
                  tenant_id: str | None = None) -> ProviderResult:
    """Call one operation (``purchase``, ``inquiry``, ``check_status``, ``balance``,
    ``catalog``) of a configuration, recording its health. A new call to a disabled
    configuration or through an open breaker returns ``REJECTED`` without calling (nothing
    left: safe to route elsewhere). ``check_status`` — about a purchase already sent — always
    goes to the provider. For ``catalog`` the items are in ``result.data["items"]``.

    ``tenant_id``: the tenant the call is made for (a purchase, its status, an inquiry): its
    breaker on the configuration is consulted and fed too (hub.providers.health).
    """
    return call_prepared(PreparedConfig(get_config(uow, config_id)), operation, request, tenant_id=tenant_id)


def call_prepared(row: PreparedConfig, operation: str, request: Any = None, *,
                  tenant_id: str | None = None, breakers_closed: bool = False) -> ProviderResult:
    """:func:`call_provider` for a configuration prepared before (no database access; an
    app context is needed for Redis, the health records). ``breakers_closed``: the caller
    read both breakers closed just before (a batch's calls: one read for all of them)."""
    config_id = row.id
    # The kill switch and the breaker stop new calls only: a status check asks about a
    # purchase already sent, and only the provider knows its outcome.
    if not row.enabled and operation != "check_status":
        return ProviderResult(State.REJECTED, message="provider configuration is switched off",
                              data={"not_sent": True})
    redis = _state().redis
    if operation != "check_status" and not breakers_closed and not health.allow_call(redis, config_id, tenant_id):
        return ProviderResult(State.REJECTED, message="provider circuit breaker is open",
                              data={"not_sent": True})
    provider = row.provider()
    if operation == "purchase" and request.callback_url is None:
        request = replace(request, callback_url=row.callback_url)
    method: Callable = getattr(provider, operation)
    started = time.perf_counter()
    with watch_transport() as transport_failures:
        if operation == "catalog":
            items = method()
            result = ProviderResult(State.SUCCESS, data={"items": items})
        else:
            result = method(request) if request is not None else method()
    elapsed = (time.perf_counter() - started) * 1000
    not_sent = bool(result.data.get("not_sent"))
    if transport_failures and (result.state is State.UNKNOWN or not_sent):
        result.transport_failure = True  # the HTTP client met one; the plugin did not say so
    health.record(redis, config_id, "not_sent" if not_sent else result.state.value, elapsed,
                  tenant_id=tenant_id, transport_failure=result.transport_failure)
    log.info("provider call", config_id=config_id, provider=row.provider_code, operation=operation,
             state=result.state.value, ms=round(elapsed, 1), transport_failure=result.transport_failure)
    return result


# -- callbacks ------------------------------------------------------------------------------
def callback_proof(cls: type[Provider], row: ProviderConfig) -> str:
    """How much a verified callback of this configuration proves: ``signed`` (verified with
    the configuration's own secret, or by the plugin's own means), ``weak`` (the provider's
    callbacks prove little: ``weak_callback_auth``) or ``unproven`` (the provider signs its
    callbacks but this configuration has no secret to verify them with)."""
    if cls.weak_callback_auth:
        return "weak"
    if cls.callback_secret_setting and not callback_secret(row):
        return "unproven"
    return "signed"


def receive_callback(uow: UnitOfWork, provider_code: str, config_id: str, headers: Mapping[str, str],
                     body: bytes, remote_addr: str | None = None) -> tuple[ProviderCallback, ProviderResult | None]:
    """Verify and record one callback. Readable ones publish ``provider.callback_received``
    with ``proven``: only a ``signed`` one (:func:`callback_proof`) may move money; the
    others only make the transactions service check the status of their reference.

    The body is the provider's: it is stored whole, as the bytes that came (the edge bounds
    it, ``ROP_MAX_BODY_CALLBACK``), and only the plugin reads it. What the hub stores as text
    (headers, the reason, the plugin's result) holds no NUL or lone surrogate; a result that
    does, or whose ``ref_id`` is longer than the hub keeps, is refused like a forged callback.

    :returns: the recorded row and the parsed result (None when rejected).
    """
    from hub.edge import json_problems, printable
    from hub.providers.contract import CallbackRejected

    record = ProviderCallback(id=new_id("pcb"), provider_code=provider_code, config_id=config_id,
                              remote_addr=remote_addr, headers={printable(k): printable(v) for k, v in headers.items()
                                                                if k.lower() not in {"authorization", "cookie"}},
                              body=bytes(body), accepted=False)
    uow.session.add(record)
    row = uow.session.get(ProviderConfig, config_id)
    if row is None or row.provider_code != provider_code:
        record.reason = "unknown provider configuration"
        return record, None
    record.tenant_id = row.tenant_id
    try:
        result = provider_for(row).parse_callback(headers, body)
    except CallbackRejected as exc:
        record.reason = printable(str(exc)) or "rejected"
        return record, None
    except Exception as exc:
        log.exception("parse_callback failed", provider=provider_code, config_id=config_id)
        record.reason = f"parse_callback error: {type(exc).__name__}"
        return record, None
    stored = {k: v for k, v in result.as_dict().items() if k != "raw"}
    problems = json_problems(stored)
    if not problems and len(result.ref_id or "") > REF_ID_LENGTH:
        problems = {"ref_id": [f"longer than {REF_ID_LENGTH} characters"]}
    if problems:
        record.reason = "the plugin's result cannot be stored: " + "; ".join(
            f"{name} {', '.join(why)}" for name, why in sorted(problems.items()))
        return record, None
    proof = callback_proof(_host().provider_class(provider_code), row)
    record.accepted = True
    record.ref_id = result.ref_id
    record.state = result.state.value
    record.result = {**stored, "proof": proof}
    if proof != "signed":
        record.reason = f"{proof}: moves no money; a status check of the reference decides"
    _hand_on(uow, record, result, row, proven=proof == "signed")
    return record, result


def _hand_on(uow: UnitOfWork, record: ProviderCallback, result: ProviderResult, row: ProviderConfig, *,
             proven: bool) -> None:
    """Publish the callback as ``provider.callback_received`` (hub.bus outbox)."""
    from hub.bus import publish
    from hub.providers.messages import ProviderCallbackReceived

    ctx = CallContext.system("providers", tenant_id=row.tenant_id)
    publish(ctx, uow, ProviderCallbackReceived(
        callback_id=record.id, provider_code=row.provider_code, config_id=row.id, ref_id=result.ref_id,
        state=result.state.value, provider_ref=result.provider_ref, serial_number=result.serial_number,
        cost=result.cost, message=result.message, proven=proven))
