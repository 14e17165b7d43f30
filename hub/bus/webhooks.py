"""Tenant webhooks: signed POSTs of every event, retried on a schedule, every attempt recorded.

- ``ROP-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` (docs/api.md, "Webhooks"); while
  a secret rotates, the previous secret signs too (``v1=`` twice) for :data:`ROTATION_OVERLAP`.
- A delivery is retried until a 2xx on the tenant's schedule (default :data:`DEFAULT_SCHEDULE`,
  about a day), then marked failed; it can be re-sent on demand (a new delivery of the event).
- URLs resolving to private, loopback, link-local (and other non-global) addresses, or to
  IPv6 forms carrying such an IPv4 address, are refused unless ``ROP_WEBHOOK_ALLOW_PRIVATE``
  is on — when set, and again at each delivery, on the address the delivery connects to
  (hub.netguard: no DNS rebinding).
- A per-endpoint circuit breaker (Redis) opens after :data:`BREAKER_THRESHOLD` consecutive
  failures: deliveries wait until it half-opens instead of hammering a dead endpoint.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from flask import Flask, current_app
from rq import Queue
from rq.timeouts import BaseTimeoutException
from sqlalchemy import bindparam, select

from hub.bus.models import TenantEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from hub.cache import refcache
from hub.context import CallContext
from hub.db import DriverStatement, UnitOfWork, new_id, unit_of_work, utcnow
from hub.errors import NotFound, ValidationFailed
from hub.netguard import DestinationRefused, Guard, guarded_client
from hub.queues import queue as hub_queue
from hub.scoping import get_owned

log = structlog.get_logger("hub.bus.webhooks")

#: Seconds between attempts after each failure (about 22 hours in all), jittered ±20 %.
DEFAULT_SCHEDULE: tuple[int, ...] = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 21600, 28800)
ROTATION_OVERLAP = dt.timedelta(hours=24)
BREAKER_THRESHOLD = 5
BREAKER_OPEN_SECONDS = 60
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DELIVER_JOB = "hub.bus.webhooks.deliver_job"
#: the job of several deliveries (each still one POST of one event), made concurrently
DELIVER_MANY_JOB = "hub.bus.webhooks.deliver_many_job"
#: the most deliveries one job carries
DELIVERIES_PER_JOB = 50
#: deliveries one batch job makes at once (threads waiting on the network): with a 10 s
#: timeout a full job takes at most 4 rounds, inside its job timeout
DELIVERY_THREADS = 16
#: How much of an endpoint's answer an attempt keeps (characters), for the admin's delivery page.
RESPONSE_EXCERPT = 2000
DELIVERY_STATUSES = ("pending", "delivered", "failed")


# -- signatures ------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<sig>[,v1=<sig>]`` for each secret (current first)."""
    return ",".join([f"t={timestamp}"] + [f"v1={sign(s, timestamp, body)}" for s in secrets_])


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does: True when one ``v1`` matches and ``t`` is within ``tolerance`` seconds."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


# -- SSRF guard ------------------------------------------------------------------------------
def check_url(url: str, allow_private: bool) -> None:
    """Refuse URLs that are not http(s) or that resolve to a non-public address (an IPv6 form
    carrying a private IPv4 address included: hub.netguard).

    This is the answer to ``PUT /v1/webhook``; a delivery does not rely on it (DNS may change
    after): it connects through the guarded transport, which judges the addresses it resolves
    and connects to one of those.

    :raise ValidationFailed: with the reason under ``url``.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        parts, host, port = None, None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed("the webhook URL must be an http or https URL", errors={"url": ["not an http(s) URL"]})
    if allow_private:
        return  # any address will do: nothing to judge before the delivery resolves it
    try:
        Guard().addresses(host, port or (443 if parts.scheme == "https" else 80))
    except DestinationRefused as exc:
        if str(exc).startswith("cannot resolve"):
            raise ValidationFailed("the webhook host does not resolve", errors={"url": [str(exc)]}) from None
        raise ValidationFailed("the webhook URL points at a private, loopback or link-local address",
                               errors={"url": [str(exc)]}) from None


_clients: dict[bool, httpx.Client] = {}
_clients_lock = threading.Lock()


def delivery_client(allow_private: bool) -> httpx.Client:
    """The process's client for deliveries: pooled, no redirects followed, every connection
    through the SSRF guard (:func:`hub.netguard.guarded_client`)."""
    with _clients_lock:
        found = _clients.get(allow_private)
        if found is None:
            found = _clients[allow_private] = guarded_client(allow_private=allow_private, timeout=TIMEOUT,
                                                             follow_redirects=False)
        return found


# -- event filters ---------------------------------------------------------------------------
#: ``set_webhook(events=UNCHANGED)``: keep the endpoint's filter (every event for a new one).
UNCHANGED = object()


def public_event_types() -> list[str]:
    """The types of the events a tenant sees (the feed and webhooks), sorted."""
    from hub.bus.messages import MESSAGE_TYPES

    return sorted(t for t, cls in MESSAGE_TYPES.items()
                  if getattr(cls, "kind", None) == "event" and getattr(cls, "public", False))


def check_event_filter(patterns: list[str]) -> list[str]:
    """The filter's patterns, deduplicated in order: each an event type, ``prefix.*`` or ``*``.

    :raise ValidationFailed: a pattern that matches no event type (a typo sends nothing, silently).
    """
    known = public_event_types()
    bad = [p for p in patterns if not any(event_matches(t, [p]) for t in known)]
    if not patterns or bad:
        what = f"{bad[0]!r} matches no event type" if bad else "at least one event type"
        raise ValidationFailed(f"invalid events filter: {what}",
                               errors={"events": [(f"{what}; the types are {', '.join(known)}, "
                                                   "or a pattern such as transaction.* or *")]})
    return list(dict.fromkeys(p.strip() for p in patterns))


def event_matches(event_type: str, patterns: list[str] | None) -> bool:
    """Whether a filter (None: every event) lets ``event_type`` through."""
    if patterns is None:
        return True
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def _filter_of(column: str | None) -> list[str] | None:
    return column.split(",") if column else None


def events_of(endpoint: WebhookEndpoint) -> list[str]:
    """The endpoint's filter as the API shows it (``["*"]``: every event)."""
    return _filter_of(endpoint.events) or ["*"]


# -- use-cases -------------------------------------------------------------------------------
def set_webhook(ctx: CallContext, uow: UnitOfWork, url: str, *, rotate_secret: bool = False,
                schedule: list[int] | None = None, events: list[str] | None | object = UNCHANGED) -> WebhookEndpoint:
    """Set the tenant's webhook URL (and optionally its retry schedule, its event filter or
    a new secret).

    The first call makes the secret; ``rotate_secret`` makes a new one while the previous one
    keeps signing for :data:`ROTATION_OVERLAP`. ``events``: the event types to send (types,
    ``prefix.*`` or ``*``); None for every event; :data:`UNCHANGED` keeps the current filter.
    """
    ctx.require_scope("webhooks:write")
    config = current_app.extensions["rop"].config
    check_url(url, config.webhook_allow_private)
    if schedule is not None and (not schedule or any(s < 0 for s in schedule) or len(schedule) > 50):
        raise ValidationFailed("invalid schedule", errors={"schedule": ["1 to 50 delays in seconds, none negative"]})
    if events is not UNCHANGED and events is not None:
        events = check_event_filter(list(events))  # type: ignore[arg-type]
        if "*" in events:
            events = None
    endpoint = uow.session.get(WebhookEndpoint, ctx.tenant_id)
    now = utcnow()
    refcache().bump(uow, "webhooks")
    if endpoint is None:
        endpoint = WebhookEndpoint(tenant_id=ctx.tenant_id, url=url, secret=_new_secret(), created_at=now)
        uow.session.add(endpoint)
    elif rotate_secret:
        endpoint.previous_secret, endpoint.previous_until = endpoint.secret, now + ROTATION_OVERLAP
        endpoint.secret = _new_secret()
    endpoint.url = url
    if schedule is not None:
        endpoint.schedule = ",".join(str(int(s)) for s in schedule)
    if events is not UNCHANGED:
        endpoint.events = ",".join(events) if events else None  # type: ignore[arg-type]
    endpoint.updated_at = now
    # Events of this unit of work see the endpoint and its filter (False: none; else (filter,)).
    uow.memo[("webhook_endpoint", ctx.tenant_id)] = (_filter_of(endpoint.events),)
    return endpoint


def delete_webhook(ctx: CallContext, uow: UnitOfWork) -> None:
    """Remove the tenant's webhook: no new deliveries; pending ones end as failed at their
    next attempt ("the tenant has no webhook any more").

    :raise NotFound: no webhook is set.
    """
    ctx.require_scope("webhooks:write")
    endpoint = get_webhook(ctx, uow)
    uow.memo[("webhook_endpoint", ctx.tenant_id)] = False
    refcache().bump(uow, "webhooks")
    uow.session.delete(endpoint)


def _new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def get_webhook(ctx: CallContext, uow: UnitOfWork) -> WebhookEndpoint:
    endpoint = uow.session.get(WebhookEndpoint, ctx.tenant_id)
    if endpoint is None:
        raise NotFound("no webhook is set for this tenant")
    return endpoint


def schedule_of(endpoint: WebhookEndpoint) -> list[int]:
    return [int(s) for s in endpoint.schedule.split(",")] if endpoint.schedule else list(DEFAULT_SCHEDULE)


def list_deliveries(ctx: CallContext, uow: UnitOfWork, *, status: str | None = None, cursor: str | None = None,
                    limit: int = 50) -> list[WebhookDelivery]:
    """The tenant's deliveries, newest first (cursor: the last id of the previous page)."""
    from hub.scoping import tenant_select

    query = tenant_select(ctx, WebhookDelivery).order_by(WebhookDelivery.created_at.desc(),
                                                         WebhookDelivery.id.desc()).limit(limit)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if cursor:
        last = get_owned(uow.session, ctx, WebhookDelivery, cursor, what="delivery")
        query = query.where((WebhookDelivery.created_at < last.created_at)
                            | ((WebhookDelivery.created_at == last.created_at) & (WebhookDelivery.id < last.id)))
    return list(uow.session.execute(query).scalars())


def operator_deliveries(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None,
                        status: str | None = None, q: str | None = None, sort: str = "-created", page: int = 1,
                        per_page: int = 50) -> dict[str, Any]:
    """Operator (scope ``*``): one page of the deliveries of one tenant or of all, with the total.

    :param q: a delivery or event id (exact), or an event type prefix (``transaction.``).
    :param sort: ``created``, ``status``, ``attempts`` or ``event`` (``-`` first: descending).
    :return: ``{"rows" (WebhookDelivery), "total", "estimated", "page", "pages", "per_page", "sort"}``.
    :raise ValidationFailed: an unknown status.
    """
    from sqlalchemy import or_

    from hub.paging import matching, sorted_page

    ctx.require_scope("*")
    if status and status not in DELIVERY_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(DELIVERY_STATUSES)}", errors={"status": ["invalid"]})
    conditions = matching(WebhookDelivery, tenant_id=tenant_id, status=status)
    q = (q or "").strip()
    if q:
        conditions.append(or_(WebhookDelivery.id == q, WebhookDelivery.event_id == q,
                              WebhookDelivery.event_type.startswith(q, autoescape=True)))
    columns = {"created": WebhookDelivery.created_at, "status": WebhookDelivery.status,
               "attempts": WebhookDelivery.attempts, "event": WebhookDelivery.event_type}
    return sorted_page(uow, WebhookDelivery, conditions, columns=columns, sort=sort, default="-created", page=page,
                       per_page=per_page)


def list_attempts(ctx: CallContext, uow: UnitOfWork, delivery_id: str) -> list[WebhookAttempt]:
    get_owned(uow.session, ctx, WebhookDelivery, delivery_id, what="delivery")
    return list(uow.session.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                    .order_by(WebhookAttempt.at, WebhookAttempt.id)).scalars())


def delivery_detail(ctx: CallContext, uow: UnitOfWork, delivery_id: str) -> dict:
    """A tenant's delivery with its event (the payload sent), its attempts and the endpoint's URL now."""
    delivery = get_owned(uow.session, ctx, WebhookDelivery, delivery_id, what="delivery")
    event = uow.session.execute(select(TenantEvent).where(TenantEvent.id == delivery.event_id)).scalar_one_or_none()
    endpoint = uow.session.get(WebhookEndpoint, delivery.tenant_id)
    return {"delivery": delivery, "envelope": event.envelope if event is not None else None,
            "attempts": list_attempts(ctx, uow, delivery_id), "endpoint_url": endpoint.url if endpoint else None}


def resend_delivery(ctx: CallContext, uow: UnitOfWork, delivery_id: str) -> WebhookDelivery:
    """Send a delivery's event again, as a new delivery with a fresh schedule."""
    ctx.require_scope("webhooks:write")
    old = get_owned(uow.session, ctx, WebhookDelivery, delivery_id, what="delivery")
    get_webhook(ctx, uow)
    return _new_delivery(uow, old.tenant_id, old.event_id, old.event_type)


def _new_delivery(uow: UnitOfWork, tenant_id: str, event_id: str, event_type: str) -> WebhookDelivery:
    delivery = WebhookDelivery(id=new_id("whd"), tenant_id=tenant_id, event_id=event_id, event_type=event_type,
                               status="pending", attempts=0, next_attempt_at=utcnow())
    uow.session.add(delivery)
    enqueue_deliveries(uow, [delivery.id])
    return delivery


_ENDPOINTS = WebhookEndpoint.__table__
_HAS_ENDPOINT = DriverStatement(select(_ENDPOINTS.c.tenant_id, _ENDPOINTS.c.events)
                                .where(_ENDPOINTS.c.tenant_id == bindparam("tenant_id")).limit(1))


def on_event(ctx: CallContext, uow: UnitOfWork, event) -> None:
    """A delivery of a tenant's event when the tenant has a webhook whose filter lets the
    event's type through (called by ``publish``)."""
    if not event.tenant_id or event.kind != "event":
        return
    has = _endpoint_filter(uow, event.tenant_id)
    if has and event_matches(event.type, has[0]):
        _new_delivery(uow, event.tenant_id, event.id, event.type)


def _endpoint_filter(uow: UnitOfWork, tenant_id: str):
    """False when the tenant has no webhook; else ``(filter,)`` (None: every event).

    Every event asks, so: once per tenant and unit of work (a purchase publishes three
    events, the last one while its wallet row is locked), through this process's cache
    (hub.cache, namespace ``webhooks``: set_webhook bumps it after its commit), its key
    only when it is read. An endpoint set in this unit of work counts (set_webhook notes it).
    """
    key = ("webhook_endpoint", tenant_id)
    has = uow.memo.get(key)
    if has is None:
        def load():
            row = _HAS_ENDPOINT.first(uow.session.connection(), {"tenant_id": tenant_id})
            return False if row is None else (_filter_of(row[1]),)

        has = uow.memo[key] = refcache().get("webhooks", ("endpoint", tenant_id), load)
    return has


def delivery_rows(uow: UnitOfWork, events: list) -> list[dict]:
    """:func:`on_event` of ``events`` (a tenant's, public) for a caller that inserts the rows
    itself (hub.bus.outbox.staged_rows): the ``bus_webhook_deliveries`` rows (enqueue them
    with :func:`enqueue_deliveries` once written)."""
    rows = []
    for event in events:
        has = _endpoint_filter(uow, event.tenant_id)
        if has and event_matches(event.type, has[0]):
            now = utcnow()
            rows.append({"id": new_id("whd"), "tenant_id": event.tenant_id, "event_id": event.id,
                         "event_type": event.type, "status": "pending", "attempts": 0, "next_attempt_at": now,
                         "delivered_at": None, "created_at": now})
    return rows


def enqueue_deliveries(uow: UnitOfWork, delivery_ids: list[str]) -> None:
    """Enqueue these deliveries once ``uow`` commits (with the unit of work's messages:
    ``hub.bus.outbox``'s relay)."""
    if delivery_ids:
        from hub.bus.outbox import relay_after_commit

        relay_after_commit(uow, [], delivery_ids)


#: the delivery job's RQ options
_JOB = {"job_timeout": 60, "result_ttl": 0, "failure_ttl": 86400}
#: a batch job's: its deliveries in rounds of DELIVERY_THREADS, each POST up to TIMEOUT
_MANY_JOB_TIMEOUT = 120


def enqueue_now(app: Flask, delivery_ids: list[str], pipeline=None) -> None:
    """Enqueue these deliveries in one round trip (or in ``pipeline``): one delivery job for a
    lone one, batch jobs (:func:`deliver_many_job`, up to :data:`DELIVERIES_PER_JOB` each) for
    several."""
    queue = hub_queue("webhooks", app.extensions["rop"].redis)
    options = {"timeout": _JOB["job_timeout"], "result_ttl": _JOB["result_ttl"], "failure_ttl": _JOB["failure_ttl"]}
    ids = list(delivery_ids)
    if len(ids) == 1:
        jobs = [Queue.prepare_data(DELIVER_JOB, (ids[0],), **options)]
    else:
        jobs = [Queue.prepare_data(DELIVER_MANY_JOB, (ids[n:n + DELIVERIES_PER_JOB],),
                                   **options | {"timeout": _MANY_JOB_TIMEOUT})
                for n in range(0, len(ids), DELIVERIES_PER_JOB)]
    if jobs:
        queue.enqueue_many(jobs, pipeline=pipeline)


def enqueue_delivery(app: Flask, delivery_id: str, delay: float = 0) -> None:
    queue = hub_queue("webhooks", app.extensions["rop"].redis)
    if delay > 0:
        queue.enqueue_in(dt.timedelta(seconds=delay), DELIVER_JOB, delivery_id, **_JOB)
    else:
        queue.enqueue(DELIVER_JOB, delivery_id, **_JOB)


# -- circuit breaker -------------------------------------------------------------------------
def _breaker_keys(tenant_id: str) -> tuple[str, str]:
    return f"rop:webhook:cb:{tenant_id}:failures", f"rop:webhook:cb:{tenant_id}:open"


def breaker_open_for(redis, tenant_id: str) -> float:
    """Seconds until the tenant endpoint's breaker half-opens (0: closed)."""
    ttl = redis.pttl(_breaker_keys(tenant_id)[1])
    return ttl / 1000 if ttl and ttl > 0 else 0.0


def _breaker_result(redis, tenant_id: str, ok: bool) -> None:
    failures_key, open_key = _breaker_keys(tenant_id)
    if ok:
        redis.delete(failures_key, open_key)
        return
    failures = redis.incr(failures_key)
    redis.expire(failures_key, 3600)
    if failures >= BREAKER_THRESHOLD:
        redis.set(open_key, 1, px=BREAKER_OPEN_SECONDS * 1000)
        log.warning("webhook circuit open", tenant_id=tenant_id, failures=failures)


# -- the delivery job ------------------------------------------------------------------------
def deliver_job(delivery_id: str) -> str:
    """Attempt one POST of a pending delivery; schedule the next attempt on failure."""
    app = current_app._get_current_object()
    state = app.extensions["rop"]
    lock = state.redis.set(f"rop:webhook:lock:{delivery_id}", 1, nx=True, ex=90)
    if not lock:
        return "busy"
    try:
        with unit_of_work(state.db, readonly=True) as uow:
            delivery = uow.session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != "pending":
                return "skipped"
            endpoint = uow.session.get(WebhookEndpoint, delivery.tenant_id)
            event = uow.session.execute(select(TenantEvent).where(TenantEvent.id == delivery.event_id)).scalar_one()
            tenant_id, envelope = delivery.tenant_id, event.envelope
            if endpoint is not None:
                uow.session.expunge(endpoint)  # keep its loaded values after the session closes
        if endpoint is None:
            return _finish(app, delivery_id, None, "the tenant has no webhook any more", 0, final=True)
        wait = breaker_open_for(state.redis, tenant_id)
        if wait:
            _reschedule(app, delivery_id, wait + random.uniform(0, 5))
            return "circuit-open"
        body = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
        now = utcnow()
        signing = [endpoint.secret]
        if endpoint.previous_secret and endpoint.previous_until and endpoint.previous_until > now:
            signing.append(endpoint.previous_secret)
        headers = {"Content-Type": "application/json", "User-Agent": "rop-hub-webhooks",
                   "ROP-Signature": signature_header(signing, int(time.time()), body),
                   "ROP-Event-Id": envelope["id"], "ROP-Event-Type": envelope["type"], "ROP-Delivery-Id": delivery_id}
        started = time.perf_counter()
        status_code, error, excerpt = None, None, None
        try:
            # The guarded client judges the address it connects to (DNS may have changed since PUT).
            response = delivery_client(state.config.webhook_allow_private).post(endpoint.url, content=body,
                                                                                 headers=headers)
            status_code = response.status_code
            excerpt = response.text[:RESPONSE_EXCERPT].replace("\x00", "\ufffd")
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        elapsed = int((time.perf_counter() - started) * 1000)
        _breaker_result(state.redis, tenant_id, error is None)
        return _finish(app, delivery_id, status_code, error, elapsed, schedule=schedule_of(endpoint),
                       url=endpoint.url, response_body=excerpt)
    finally:
        state.redis.delete(f"rop:webhook:lock:{delivery_id}")


def _deliver_in_app(app: Flask, delivery_id: str) -> str:
    with app.app_context():
        return deliver_job(delivery_id)


def deliver_many_job(delivery_ids: list[str]) -> dict[str, str]:
    """Make several deliveries at once, each :func:`deliver_job` (one POST of one event, its
    own attempt log, retry schedule and the tenant's breaker), up to
    :data:`DELIVERY_THREADS` in flight; :return: each one's result. A delivery that raised is
    logged and left pending (the deliveries sweep enqueues it again); the others are made."""
    app = current_app._get_current_object()
    ids = list(dict.fromkeys(delivery_ids))
    results: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(ids), DELIVERY_THREADS)), thread_name_prefix="rop-webhook")
    futures = {delivery_id: pool.submit(_deliver_in_app, app, delivery_id) for delivery_id in ids}
    try:
        for delivery_id, future in futures.items():
            try:
                results[delivery_id] = future.result()
            except BaseTimeoutException:
                # the job's own timeout (raised in this thread by RQ): the job fails now; the
                # deliveries not started stay pending (the deliveries sweep enqueues them),
                # the ones under way finish and record themselves
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            except Exception:
                log.exception("a webhook delivery of a batch failed; the deliveries sweep retries it",
                              delivery_id=delivery_id)
                results[delivery_id] = "error"
    finally:
        pool.shutdown(wait=False)
    return results


def _finish(app: Flask, delivery_id: str, status_code: int | None, error: str | None, elapsed: int, *,
            schedule: list[int] | None = None, final: bool = False, url: str | None = None,
            response_body: str | None = None) -> str:
    state = app.extensions["rop"]
    delay = None
    with unit_of_work(state.db) as uow:
        delivery = uow.session.get(WebhookDelivery, delivery_id)
        delivery.attempts += 1
        uow.session.add(WebhookAttempt(id=new_id("wha"), delivery_id=delivery_id, tenant_id=delivery.tenant_id,
                                       status_code=status_code, error=error, duration_ms=elapsed, url=url,
                                       response_body=response_body))
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", utcnow(), None
        elif final or schedule is None or delivery.attempts > len(schedule):
            delivery.status, delivery.next_attempt_at = "failed", None
        else:
            base = schedule[delivery.attempts - 1]
            delay = base * random.uniform(0.8, 1.2) if base else 0
            delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        status = delivery.status
        uow.commit()
    if delay is not None:
        enqueue_delivery(app, delivery_id, delay)
    return status


def _reschedule(app: Flask, delivery_id: str, delay: float) -> None:
    state = app.extensions["rop"]
    with unit_of_work(state.db) as uow:
        delivery = uow.session.get(WebhookDelivery, delivery_id)
        delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        uow.commit()
    enqueue_delivery(app, delivery_id, delay)


def sweep_deliveries(app: Flask | None = None, *, grace: float = 120.0) -> int:
    """Enqueue pending deliveries overdue by ``grace`` seconds (their job was lost)."""
    app = app or current_app._get_current_object()
    state = app.extensions["rop"]
    cutoff = utcnow() - dt.timedelta(seconds=grace)
    with unit_of_work(state.db, readonly=True) as uow:
        ids = uow.session.execute(select(WebhookDelivery.id).where(
            WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= cutoff).limit(1000)).scalars().all()
    enqueue_now(app, list(ids))
    return len(ids)


def sweep_deliveries_job() -> int:
    return sweep_deliveries()
