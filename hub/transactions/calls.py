"""Calling providers for the driver: what a call is (:class:`Step`), the concurrency slots of
a configuration, the configurations read once for a batch, and the call itself, made with
no database session open."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from flask import current_app
from sqlalchemy import event

from hub.concurrency import acquire, acquire_many, limit, release_many
from hub.db import UnitOfWork, unit_of_work
from hub.providers import client as providers
from hub.transactions import lifecycle
from hub.transactions.lifecycle import Outcome

log = structlog.get_logger("hub.transactions")


@dataclass
class Step:
    """A provider call of a transaction, decided under its row lock: a ``purchase`` at an
    offer of its route (recorded ``sent`` before it goes), or a ``check`` of the status of
    an attempt whose outcome is unknown (same reference)."""

    kind: str  # purchase | check
    transaction_id: str
    tenant_id: str
    seq: int
    config_id: str
    provider_code: str
    provider_sku: str
    reference: str
    customer_no: str
    amount: int | None = None
    provider_ref: str | None = None
    #: set by the claim: the route's configuration is no longer usable for the tenant (removed,
    #: switched off, retired, no longer enabled for it) though the process's cache still had
    #: it; the purchase is not sent, its attempt recorded rejected and the next offer tried
    unusable: bool = False

    @property
    def operation(self) -> str:
        return "purchase" if self.kind == "purchase" else "check_status"

    @property
    def via(self) -> str:
        """What the answer is, to :func:`lifecycle.apply_outcome`."""
        return "purchase" if self.kind == "purchase" else "status_check"


def _db():
    return current_app.extensions["rop"].db


def _redis():
    return current_app.extensions["rop"].redis


# -- slots -------------------------------------------------------------------------------------
def _bound(config_id: str) -> int:
    opts = lifecycle.settings()
    return opts.provider_limits.get(config_id, opts.provider_limit)


def slot(config_id: str):
    """A slot of ``config_id`` for one call, waited for (``hub.concurrency.limit``: at most N
    calls in flight per configuration across every process; Busy after the timeout)."""
    return limit(_redis(), f"provider:{config_id}", _bound(config_id), lifecycle.settings().slot_timeout, ttl=60.0)


def wait_for_slot(config_id: str):
    """A lease of a slot of ``config_id``, waited for (:raise Busy: after the timeout)."""
    return acquire(_redis(), f"provider:{config_id}", _bound(config_id), lifecycle.settings().slot_timeout, ttl=60.0)


def take_slots(steps: list[Step], spare: dict[str, list]) -> dict[str, object]:
    """A slot of its configuration for each step that can have one now (a spare one first),
    without waiting, one round trip per configuration; by transaction id."""
    leased: dict[str, object] = {}
    by_config: dict[str, list[Step]] = {}
    for step in steps:
        by_config.setdefault(step.config_id, []).append(step)
    try:
        for config_id, wanting in by_config.items():
            spares = spare.get(config_id) or []
            while spares and wanting:
                leased[wanting.pop(0).transaction_id] = spares.pop()
            taken = acquire_many(_redis(), f"provider:{config_id}", _bound(config_id), len(wanting), ttl=60.0)
            for step, lease in zip(wanting, taken):
                leased[step.transaction_id] = lease
    except BaseException:
        release_all(leased.values())  # a Redis error halfway: none kept (the keeper would renew them)
        raise
    return leased


def release_all(leases) -> None:
    """Give the slots back (one round trip). Redis away: logged, not raised (the process
    stops extending them at once, so they lapse after their TTL); the caller goes on
    (recording the answers of the calls made)."""
    leases = list(leases)
    if not leases:
        return
    try:
        release_many(leases)
    except Exception as exc:  # noqa: BLE001 - a lease lapses by itself; an answer must not be lost
        log.warning("could not give provider slots back; they lapse after their TTL",
                    count=len(leases), error=f"{type(exc).__name__}: {exc}"[:300])


# -- configurations ----------------------------------------------------------------------------
def preload_configs(uow: UnitOfWork, tenant_id: str) -> list:
    """Load the tenant's provider configurations into ``uow``'s session and keep them alive.

    The providers client looks a configuration up by id before each call; with the row in
    the session (the identity map holds rows only weakly: the returned list keeps them) that
    lookup is answered from memory, so after the caller ends the read transaction the call
    itself needs no database connection. Keep the list until the call returns.
    """
    loaded: list = []
    event.listen(uow.session, "loaded_as_persistent", lambda _session, row: loaded.append(row))
    providers.usable_configs(uow, tenant_id, healthy_only=False)
    return loaded


def configs_of(tenant_ids: set[str]) -> dict[str, dict]:
    """Each tenant's provider configurations, read and decrypted once for a batch's calls
    (``providers.prepare``: by configuration id)."""
    found: dict[str, dict] = {}
    if tenant_ids:
        with unit_of_work(_db(), readonly=True) as uow:
            for tenant_id in tenant_ids:
                found[tenant_id] = providers.prepare(uow, tenant_id)
            uow.session.commit()
    return found


def closed_breakers(steps: list[Step]) -> set[tuple[str, str | None]]:
    """The (configuration, tenant) pairs of the purchase steps whose breakers are closed now,
    read in one round trip for a batch's calls."""
    return providers.breakers_closed((step.config_id, step.tenant_id) for step in steps if step.kind == "purchase")


# -- the call ----------------------------------------------------------------------------------
def call_provider(step: Step, operation: str, configs: dict | None = None, *, breakers_closed: bool = False) -> Outcome:
    """Call ``operation`` (purchase or check_status) for ``step`` with no database session open.

    ``configs``, the tenant's configurations prepared before (:func:`configs_of`, by id),
    spare any read (and ``breakers_closed``, read for a batch by :func:`closed_breakers`,
    the breakers' check); without them the configuration is read first and the read transaction
    ends before the call (the session keeps the row, so the call itself touches no
    connection). An exception from the plugin is an unknown outcome: the request may have
    left.
    """
    prepared = (configs or {}).get(step.config_id)
    uow = None if prepared is not None else UnitOfWork(_db().session(readonly=True))
    try:
        if uow is not None:
            loaded = preload_configs(uow, step.tenant_id)
            uow.session.commit()  # ends the read: no connection is held during the call
        try:
            if operation == "purchase":
                request = providers.PurchaseRequest(ref_id=step.reference, sku=step.provider_sku,
                                                    customer_no=step.customer_no, amount=step.amount)
            else:
                request = providers.StatusRequest(ref_id=step.reference, sku=step.provider_sku,
                                                  customer_no=step.customer_no, provider_ref=step.provider_ref)
            # For this tenant: its breaker on the configuration is consulted and fed too.
            if prepared is not None:
                result = providers.call_prepared(prepared, operation, request, tenant_id=step.tenant_id,
                                                 breakers_closed=breakers_closed)
            elif operation == "purchase":
                result = providers.purchase(uow, step.config_id, request, tenant_id=step.tenant_id)
            else:
                result = providers.check_status(uow, step.config_id, request, tenant_id=step.tenant_id)
        except Exception as exc:
            log.exception("provider call raised; outcome unknown", operation=operation,
                          transaction_id=step.transaction_id, config_id=step.config_id)
            return Outcome("unknown", message=f"{type(exc).__name__}: {exc}"[:500])
        if uow is not None:
            del loaded  # the rows were kept alive for the call's look-ups
    finally:
        if uow is not None:
            uow.session.close()
    return Outcome.from_result(result)


#: threads per process that make the provider calls of batches (their calls wait on the network)
CALL_THREADS = 128
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def call_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="rop-provider-call")
        return _pool


#: threads per process that make the status checks of batch jobs (hub.transactions.handlers)
CHECK_THREADS = 64
_check_pool: ThreadPoolExecutor | None = None


def check_pool() -> ThreadPoolExecutor:
    """The status checks' own pool. A check waits for a slot of its configuration; in the
    calls' pool, checks waiting so would keep a batch's calls, which hold those very slots,
    from starting (until the slot timeout)."""
    global _check_pool
    with _pool_lock:
        if _check_pool is None:
            _check_pool = ThreadPoolExecutor(max_workers=CHECK_THREADS, thread_name_prefix="rop-status-check")
        return _check_pool
