"""The contract kit: checks that certify a provider plugin against the rules that keep money
safe, by driving it against its provider's simulator through a :class:`FaultProxy`.

Each check states its rule; a violation says what the kit did, what the plugin answered, the
rule, and how to fix it. Checks of a capability the provider does not declare are skipped,
with the reason. :func:`run_contract` runs them all; :mod:`hub.providers.testing` turns them
into pytest tests (``ProviderContractTests``). docs/plugins.md, "The contract kit", lists
every check.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

from marshmallow import Schema, missing

from hub.providers.contract import (
    CallbackRejected,
    Capability,
    CatalogItem,
    CatalogUnavailable,
    InquiryRequest,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.faults import Fault, FaultProxy
from hub.providers.simulators import CallbackInbox, ReceivedCallback


@dataclass
class ContractCase:
    """What the kit needs to exercise a provider.

    :param make_provider: builds the provider against a base URL: the kit passes the URL
        of its fault proxy in front of ``simulator_url`` (None when there is no simulator).
        Give the provider a short read timeout here (1-2 s): the kit waits it out.
    :param sku: a prepaid product the provider sells (the provider's code).
    :param success_no: a customer number the simulator delivers at once.
    :param failed_no: a number the simulator refuses for good (wrong number).
    :param pending_no: a number the simulator answers pending, then settles by callback
        (needed when the provider declares ``callbacks``).
    :param not_found_no: a number whose status the simulator answers "not found" (default:
        ``success_no`` with a reference never sent; for stateless simulators).
    :param simulator_url: the simulator's base URL (http://127.0.0.1:PORT/...): required
        unless the provider declares ``makes_network_calls = False``.
    :param callbacks: the inbox the simulator posts callbacks to (and the provider's
        ``callback_url``), when the provider declares ``callbacks``.
    :param postpaid_sku: a postpaid product, when the provider declares ``postpaid``.
    :param postpaid_no: a number with a bill (default: ``success_no``).
    """

    make_provider: Callable[[str | None], Provider]
    sku: str
    success_no: str
    failed_no: str | None = None
    pending_no: str | None = None
    not_found_no: str | None = None
    simulator_url: str | None = None
    callbacks: CallbackInbox | None = None
    postpaid_sku: str | None = None
    postpaid_no: str | None = None
    callback_wait: float = 10.0


class CheckSkipped(Exception):
    """A check that does not apply to this provider (the message says why)."""


class ContractViolation(AssertionError):
    """The provider broke a rule of the contract (the message teaches the rule)."""


@dataclass
class Check:
    name: str
    rule: str
    fix: str
    run: Callable[[Kit], None]


@dataclass
class CheckResult:
    name: str
    status: str  # passed | failed | skipped
    message: str = ""


@dataclass
class ContractReport:
    """What :func:`run_contract` found, check by check."""

    results: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, str]:
        return {n: r.message for n, r in self.results.items() if r.status == "failed"}

    @property
    def skipped(self) -> dict[str, str]:
        return {n: r.message for n, r in self.results.items() if r.status == "skipped"}

    @property
    def passed(self) -> list[str]:
        return [n for n, r in self.results.items() if r.status == "passed"]

    def __str__(self) -> str:
        lines = [f"{r.status.upper():<8} {n}" + (f": {r.message}" if r.status == "skipped" else "")
                 for n, r in self.results.items()]
        lines += [f"\n--- {n} ---\n{m}" for n, m in self.failures.items()]
        return "\n".join(lines)


CHECKS: dict[str, Check] = {}


def check(name: str, rule: str, fix: str) -> Callable[[Callable[[Kit], None]], Callable[[Kit], None]]:
    """Register a check: ``rule`` is the one sentence it enforces, ``fix`` how to comply."""

    def register(fn: Callable[[Kit], None]) -> Callable[[Kit], None]:
        CHECKS[name] = Check(name, rule, fix, fn)
        return fn

    return register


def _reference() -> str:
    return "ct-" + uuid.uuid4().hex[:16]


def _summary(result: ProviderResult | None) -> str:
    if result is None:
        return "refused (CallbackRejected)"
    parts = [result.state.value]
    if result.provider_code:
        parts.append(f"code {result.provider_code}")
    if result.message:
        parts.append(repr(result.message[:120]))
    if result.transport_failure:
        parts.append("transport_failure")
    return ", ".join(parts)


class Kit:
    """One run of the checks against one case: its fault proxy and provider factory."""

    def __init__(self, case: ContractCase):
        self.case = case
        self.proxy: FaultProxy | None = None
        self.cls: type[Provider] | None = None
        #: the callback checks' pending purchase and its callbacks (or why there are none)
        self.callbacks_seen: tuple[Provider, str, list[ReceivedCallback]] | ContractViolation | None = None

    def __enter__(self) -> Self:
        if self.case.simulator_url:
            self.proxy = FaultProxy(self.case.simulator_url)
        return self

    def __exit__(self, *exc) -> None:
        if self.proxy is not None:
            self.proxy.close()

    # -- building blocks for checks --------------------------------------------------------
    def provider(self) -> Provider:
        provider = self.case.make_provider(self.proxy.url if self.proxy else None)
        if not isinstance(provider, Provider):
            raise ContractViolation(f"make_provider returned {type(provider).__name__}, not a Provider")
        return provider

    @property
    def provider_class(self) -> type[Provider]:
        if self.cls is None:
            self.cls = type(self.provider())
        return self.cls

    def needs(self, capability: Capability) -> None:
        if capability not in self.provider_class.capabilities:
            raise CheckSkipped(f"{self.provider_class.__name__} does not declare the {capability.value!r} capability")

    def needs_network(self) -> FaultProxy:
        cls = self.provider_class
        if not cls.makes_network_calls:
            raise CheckSkipped(f"{cls.__name__} declares makes_network_calls = False: no network to fail")
        if self.proxy is None:
            raise ContractViolation(
                "ContractCase.simulator_url is missing: the kit injects network faults between the "
                "provider and its simulator (a provider that makes no network call declares "
                "makes_network_calls = False)")
        return self.proxy

    @contextmanager
    def fault(self, fault: Fault, **options: Any) -> Iterator[FaultProxy]:
        proxy = self.needs_network()
        proxy.set(fault, **options)
        try:
            yield proxy
        finally:
            proxy.clear()

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Call a provider operation; an exception is a violation (operations never raise
        for provider-side outcomes)."""
        try:
            value = fn()
        except (CallbackRejected, CatalogUnavailable):
            raise
        except Exception as exc:
            raise ContractViolation(f"{what} raised {type(exc).__name__}: {exc} — operations answer with a "
                                    "ProviderResult (UNKNOWN when the outcome is not known); only "
                                    "programming errors raise") from exc
        return value

    def result(self, what: str, fn: Callable[[], Any]) -> ProviderResult:
        value = self.call(what, fn)
        if not isinstance(value, ProviderResult):
            raise ContractViolation(f"{what} returned {type(value).__name__}, not a ProviderResult")
        if not isinstance(value.state, State):
            raise ContractViolation(f"{what}: state {value.state!r} is not a State")
        if value.cost is not None and (isinstance(value.cost, bool) or not isinstance(value.cost, int)):
            raise ContractViolation(f"{what}: cost {value.cost!r} must be an int in minor units")
        if value.state is State.NOT_FOUND and not what.startswith("check_status"):
            raise ContractViolation(f"{what} answered not_found: only check_status may (a purchase's own "
                                    "answer is about the request just sent)")
        if value.state is State.NOT_FOUND and self.provider_class.not_found_grace is None:
            raise ContractViolation(f"{what} answered not_found but the provider declares no not_found_grace "
                                    "(how long after sending its 'not found' becomes definitive)")
        return value

    def purchase(self, provider: Provider, number: str | None = None, *, ref: str | None = None,
                 sku: str | None = None) -> tuple[str, ProviderResult]:
        ref = ref or _reference()
        request = PurchaseRequest(ref, sku or self.case.sku, number or self.case.success_no,
                                  callback_url=provider.config.callback_url)
        return ref, self.result("purchase", lambda: provider.purchase(request))

    def status(self, provider: Provider, ref: str, number: str | None = None) -> ProviderResult:
        request = StatusRequest(ref, self.case.sku, number or self.case.success_no)
        return self.result("check_status", lambda: provider.check_status(request))


def run_check(case: ContractCase, name: str, kit: Kit | None = None) -> CheckResult:
    """Run one check; a violation's message is what happened, the rule, and the fix."""
    spec = CHECKS[name]
    own = kit is None
    kit = kit or Kit(case)
    try:
        if own:
            kit.__enter__()
        spec.run(kit)
    except CheckSkipped as exc:
        return CheckResult(name, "skipped", str(exc))
    except Exception as exc:  # noqa: BLE001 - a violation, or an operation raising
        what = str(exc) if isinstance(exc, ContractViolation) else f"{type(exc).__name__}: {exc}"
        return CheckResult(name, "failed", f"{what}\n  rule: {spec.rule}\n  fix:  {spec.fix}")
    finally:
        if own:
            kit.__exit__(None, None, None)
    return CheckResult(name, "passed")


def run_contract(case: ContractCase) -> ContractReport:
    """Run every check against ``case``; the report says what passed, failed and was skipped."""
    report = ContractReport()
    with Kit(case) as kit:
        for name in CHECKS:
            report.results[name] = run_check(case, name, kit)
    return report


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise ContractViolation(what)


# == the checks ==========================================================================
_NOT_AN_ANSWER = ("map timeouts, refused or cut connections, HTTP 5xx and unreadable bodies to "
                  "State.UNKNOWN. With the hub's client: `except ProviderHttpError as exc: return "
                  "failure_result(exc, 'purchase')` (docs/plugins.md, \"What each answer means\")")


@check("declaration",
       rule="a provider declares code, name, version, capabilities, settings schema and code table "
            "with the contract's types; a provider with callbacks names its callback_secret_setting, "
            "a settings field without a default",
       fix="set the class attributes of hub.providers.contract.Provider (docs/plugins.md, \"The Provider class\")")
def check_declaration(kit: Kit) -> None:
    cls = kit.provider_class
    for attr in ("code", "name", "version"):
        _expect(isinstance(getattr(cls, attr, None), str) and bool(getattr(cls, attr)), f"{attr} must be a string")
    schema = getattr(cls, "settings_schema", None)
    _expect(isinstance(schema, type) and issubclass(schema, Schema), "settings_schema must be a marshmallow Schema class")
    _expect(all(isinstance(c, Capability) for c in cls.capabilities), "capabilities must be Capability values")
    _expect(bool(cls.code_table), "code_table must map the provider's codes")
    _expect(all(isinstance(s, State) for s in cls.code_table.values()), "code_table values must be States")
    grace = cls.not_found_grace
    _expect(grace is None or (isinstance(grace, int | float) and grace > 0),
            f"not_found_grace must be None or a number of seconds > 0, not {grace!r}")
    _expect(grace is not None or State.NOT_FOUND not in cls.code_table.values(),
            "code_table maps a code to NOT_FOUND but not_found_grace is not declared")
    _expect(isinstance(cls.weak_callback_auth, bool), "weak_callback_auth must be a bool")
    if Capability.CALLBACKS in cls.capabilities:
        setting = cls.callback_secret_setting
        _expect(bool(setting), "a provider with callbacks names the credential they are signed with "
                               "(callback_secret_setting)")
        declared = schema().fields.get(setting) if isinstance(schema, type) and setting else None
        _expect(declared is not None, f"callback_secret_setting {setting!r} is not a field of settings_schema")
        _expect(declared.load_default in (None, "") or declared.load_default is missing,
                f"{setting} must have no default: a constant secret lets anyone sign callbacks")


@check("calls_reach_the_provider",
       rule="the provider talks to the base URL it is given: the kit certifies the plugin's real calls, "
            "not a stub that answers from memory",
       fix="build the provider in make_provider with the base_url the kit passes, and make every "
           "operation call the provider's API")
def check_calls_reach_the_provider(kit: Kit) -> None:
    proxy = kit.needs_network()
    before = len(proxy.requests)
    kit.purchase(kit.provider())
    _expect(len(proxy.requests) > before, "a purchase made no request to the simulator through the kit's proxy")


@check("catalog",
       rule="catalog() lists every product with an int cost, the case's sku among them",
       fix="return CatalogItem(sku, name, category, brand, cost) for every product; cost in minor units")
def check_catalog(kit: Kit) -> None:
    kit.needs(Capability.CATALOG)
    provider = kit.provider()
    items = kit.call("catalog", provider.catalog)
    _expect(isinstance(items, list) and bool(items), f"catalog returned {items!r}: an empty or non-list catalog")
    for item in items:
        _expect(isinstance(item, CatalogItem), f"catalog item {item!r} is not a CatalogItem")
        _expect(isinstance(item.cost, int) and not isinstance(item.cost, bool) and item.cost >= 0,
                f"{item.sku}: cost {item.cost!r} must be an int >= 0")
    _expect(kit.case.sku in {i.sku for i in items}, f"{kit.case.sku} is not in the catalog")


@check("catalog_errors_raise",
       rule="a catalog that cannot be read whole raises CatalogUnavailable: a partial or empty list "
            "would make the hub mark the missing products vanished",
       fix="raise CatalogUnavailable when any of the catalog's requests fails (refused, timeout, 5xx, "
           "an unreadable or error answer); never return [] or the lists read so far")
def check_catalog_errors_raise(kit: Kit) -> None:
    kit.needs(Capability.CATALOG)
    proxy = kit.needs_network()
    before = len(proxy.requests)
    kit.call("catalog", kit.provider().catalog)
    calls = len(proxy.requests) - before
    _expect(calls > 0, "catalog() made no request to the simulator")
    faults: list[tuple[str, Fault, dict[str, Any]]] = [("connection refused", Fault.REFUSE, {})]
    for n in range(1, calls + 1):
        faults += [(f"HTTP 502 on request {n} of {calls}", Fault.STATUS, {"status": 502, "only": n}),
                   (f"an HTML page with HTTP 200 on request {n} of {calls}", Fault.GARBAGE, {"only": n})]
    for what, fault, options in faults:
        with kit.fault(fault, **options):
            try:
                items = kit.call("catalog", kit.provider().catalog)
            except CatalogUnavailable:
                continue
        raise ContractViolation(f"with {what}, catalog() returned a list of {len(items)} item(s) "
                                "instead of raising CatalogUnavailable")


@check("purchase_success",
       rule="a delivered purchase is SUCCESS, with the provider's reference and raw answer, and is not "
            "a transport failure",
       fix="map the provider's success code to State.SUCCESS; set provider_ref and raw")
def check_purchase_success(kit: Kit) -> None:
    _, result = kit.purchase(kit.provider())
    _expect(result.state is State.SUCCESS, f"the success number's purchase gave {_summary(result)}")
    _expect(bool(result.provider_ref), "a successful purchase has a provider reference (provider_ref)")
    _expect(result.raw is not None, "raw (the provider's answer verbatim) is missing")
    _expect(not result.transport_failure, "a successful answer is marked transport_failure")


@check("status_same_reference",
       rule="check_status with the purchase's own reference reports that purchase's outcome",
       fix="look the purchase up by request.ref_id (the reference the purchase was sent under)")
def check_status_same_reference(kit: Kit) -> None:
    provider = kit.provider()
    ref, _ = kit.purchase(provider)
    result = kit.status(provider, ref)
    _expect(result.state is State.SUCCESS, f"the status of a successful purchase gave {_summary(result)}")
    _expect(not result.transport_failure, "an answered status check is marked transport_failure")


@check("purchase_failure",
       rule="a number the provider refuses for good is FAILED (REJECTED when nothing was created), "
            "never SUCCESS, and is an answer, not a transport failure",
       fix="map the provider's definitive failure codes in code_table")
def check_purchase_failure(kit: Kit) -> None:
    if kit.case.failed_no is None:
        raise CheckSkipped("ContractCase.failed_no is not given")
    _, result = kit.purchase(kit.provider(), kit.case.failed_no)
    _expect(result.state in {State.FAILED, State.REJECTED}, f"the failing number gave {_summary(result)}")
    _expect(not result.transport_failure, "the provider's answer is marked transport_failure")


@check("unknown_sku_does_not_raise",
       rule="an unknown product is an answer, never an exception or a success",
       fix="map the provider's 'no such product' answer (usually REJECTED: another provider may sell it)")
def check_unknown_sku_does_not_raise(kit: Kit) -> None:
    _, result = kit.purchase(kit.provider(), sku="NO-SUCH-SKU-0")
    _expect(result.state is not State.SUCCESS, "a purchase of an unknown product succeeded")


def _purchase_under(kit: Kit, what: str, fault: Fault, allowed: set[State], **options: Any) -> ProviderResult:
    with kit.fault(fault, **options):
        _, result = kit.purchase(kit.provider())
    _expect(result.state in allowed,
            f"{what}: purchase() answered {_summary(result)}, expected {' or '.join(s.value for s in allowed)}")
    return result


def _delivered_then(kit: Kit, what: str, fault: Fault, **options: Any) -> None:
    """A purchase the simulator receives and delivers, whose answer ``fault`` loses: it must be
    UNKNOWN, and a status check by the same reference must then find it."""
    with kit.fault(fault, **options):
        ref, result = kit.purchase(kit.provider())
    _expect(result.state is State.UNKNOWN,
            f"the simulator received and delivered the purchase, then {what}: purchase() answered "
            f"{_summary(result)}, expected unknown")
    status = kit.status(kit.provider(), ref)
    _expect(status.state in {State.SUCCESS, State.PENDING},
            f"after {what}, check_status by the same reference gave {_summary(status)} although the "
            "simulator delivered the purchase")


@check("purchase_refused",
       rule="a purchase whose connection was refused never reached the provider: REJECTED with "
            "data['not_sent'] (the hub may try the next provider), or UNKNOWN",
       fix="with the hub's client: `except ProviderHttpError as exc: return failure_result(exc, 'purchase')` "
           "(RequestNotSent becomes REJECTED, not sent)")
def check_purchase_refused(kit: Kit) -> None:
    _purchase_under(kit, "connection refused", Fault.REFUSE, {State.REJECTED, State.UNKNOWN})


@check("purchase_timeout",
       rule="an answer that cannot prove the purchase did not happen is UNKNOWN: a read timeout after "
            "sending may hide a delivered purchase (REJECTED would make the hub buy it again elsewhere; "
            "FAILED would release the money)",
       fix=_NOT_AN_ANSWER)
def check_purchase_timeout(kit: Kit) -> None:
    _delivered_then(kit, "no answer came before the read timeout", Fault.HOLD)


@check("purchase_connection_cut",
       rule="an answer that cannot prove the purchase did not happen is UNKNOWN: a connection cut after "
            "sending may hide a delivered purchase",
       fix=_NOT_AN_ANSWER)
def check_purchase_connection_cut(kit: Kit) -> None:
    _delivered_then(kit, "the connection was reset before the answer", Fault.CUT)


@check("purchase_server_error",
       rule="an answer that cannot prove the purchase did not happen is UNKNOWN: an HTTP 5xx may come "
            "after the provider bought it (FAILED would release the money of a delivered purchase)",
       fix=_NOT_AN_ANSWER)
def check_purchase_server_error(kit: Kit) -> None:
    for status in (500, 502, 503):
        _delivered_then(kit, f"the answer was HTTP {status} with an HTML body", Fault.STATUS, status=status)


@check("purchase_unreadable_answer",
       rule="an answer that cannot prove the purchase did not happen is UNKNOWN: an unreadable body "
            "(an HTML page, a truncated answer) says nothing about the purchase",
       fix=_NOT_AN_ANSWER)
def check_purchase_unreadable_answer(kit: Kit) -> None:
    _delivered_then(kit, "the answer was an HTML page with HTTP 200", Fault.GARBAGE)
    _delivered_then(kit, "the answer was cut in half", Fault.TRUNCATED)


@check("purchase_client_error",
       rule="an HTTP 4xx whose body is not the provider's answer (a gateway's page) says nothing about "
            "this purchase: UNKNOWN, or REJECTED — never SUCCESS, PENDING or FAILED",
       fix="read the provider's own answer from a 4xx when its protocol has one; otherwise UNKNOWN")
def check_purchase_client_error(kit: Kit) -> None:
    for status in (400, 429):
        with kit.fault(Fault.STATUS, status=status, forward=False):
            _, result = kit.purchase(kit.provider())
        _expect(result.state in {State.UNKNOWN, State.REJECTED},
                f"HTTP {status} with an HTML body: purchase() answered {_summary(result)}")


@check("purchase_slow_answer",
       rule="an answer that comes late but within the timeout is read like any other",
       fix="use a read timeout of several seconds in production (the hub's client: timeout=30 by default)")
def check_purchase_slow_answer(kit: Kit) -> None:
    result = _purchase_under(kit, "an answer 0.5 s late", Fault.SLOW, {State.SUCCESS}, delay=0.5)
    _expect(not result.transport_failure, "a late answer is marked transport_failure")


_STATUS_FIX = ("a status check that got no answer returns State.UNKNOWN: with the hub's client, "
               "`except ProviderHttpError as exc: return failure_result(exc, 'check_status')`")


def _status_under(kit: Kit, what: str, fault: Fault, **options: Any) -> None:
    provider = kit.provider()
    ref, _ = kit.purchase(provider)
    with kit.fault(fault, **options):
        result = kit.status(kit.provider(), ref)
    _expect(result.state is State.UNKNOWN,
            f"{what} during the status check of a delivered purchase: check_status() answered "
            f"{_summary(result)}, expected unknown")


@check("status_refused",
       rule="a status check that got no answer says nothing about the purchase: UNKNOWN (REJECTED or "
            "FAILED would release the money of a purchase that may have been delivered)",
       fix=_STATUS_FIX)
def check_status_refused(kit: Kit) -> None:
    _status_under(kit, "connection refused", Fault.REFUSE)


@check("status_no_answer",
       rule="a status check that got no answer says nothing about the purchase: UNKNOWN",
       fix=_STATUS_FIX)
def check_status_no_answer(kit: Kit) -> None:
    _status_under(kit, "a read timeout", Fault.HOLD)
    _status_under(kit, "a connection cut", Fault.CUT)


@check("status_server_error",
       rule="a status check answered by an error page (HTTP 5xx, 4xx or 200 HTML) says nothing about the "
            "purchase: UNKNOWN",
       fix=_STATUS_FIX)
def check_status_server_error(kit: Kit) -> None:
    _status_under(kit, "HTTP 502", Fault.STATUS, status=502)
    _status_under(kit, "HTTP 400 with an HTML body", Fault.STATUS, status=400, forward=False)
    _status_under(kit, "an HTML page with HTTP 200", Fault.GARBAGE)
    _status_under(kit, "a truncated answer", Fault.TRUNCATED)


@check("transport_failures_marked",
       rule="results carry transport_failure=True when the provider's transport failed (refused, timeout, "
            "cut, 5xx, unreadable) and False when the provider answered about this request: circuit "
            "breakers count only the first",
       fix="set ProviderResult(transport_failure=True) for those; the hub's failure_result(exc, operation) does")
def check_transport_failures_marked(kit: Kit) -> None:
    kit.needs_network()
    for fault, what, options in ((Fault.REFUSE, "connection refused", {}), (Fault.CUT, "connection cut", {}),
                                 (Fault.STATUS, "HTTP 502", {"status": 502})):
        with kit.fault(fault, **options):
            ref, result = kit.purchase(kit.provider())
            status = kit.status(kit.provider(), ref)
        _expect(result.transport_failure, f"{what}: the purchase's result is not marked transport_failure "
                                          f"({_summary(result)})")
        _expect(status.transport_failure, f"{what}: the status check's result is not marked transport_failure "
                                          f"({_summary(status)})")


@check("status_not_found",
       rule="a provider that declares not_found_grace answers NOT_FOUND for a reference it never received, "
            "and never FAILED or REJECTED (a status check releases no money by itself)",
       fix="map the provider's 'no such transaction' answer to State.NOT_FOUND in check_status")
def check_status_not_found(kit: Kit) -> None:
    if kit.provider_class.not_found_grace is None:
        raise CheckSkipped(f"{kit.provider_class.__name__} declares no not_found_grace: its check_status "
                           "never answers not_found (the hub keeps such a reference unknown)")
    result = kit.status(kit.provider(), _reference(), kit.case.not_found_no or kit.case.success_no)
    _expect(result.state is State.NOT_FOUND, f"the status of a reference never sent gave {_summary(result)}")
    _expect(not result.transport_failure, "a 'not found' answer is marked transport_failure")


@check("inquiry",
       rule="a postpaid inquiry is SUCCESS with the bill amount (int) in data['amount']",
       fix="set data={'amount': ..., 'customer_name': ..., 'period': ...}")
def check_inquiry(kit: Kit) -> None:
    kit.needs(Capability.POSTPAID)
    if not kit.case.postpaid_sku:
        raise ContractViolation("the provider declares postpaid: give ContractCase.postpaid_sku")
    request = InquiryRequest(_reference(), kit.case.postpaid_sku, kit.case.postpaid_no or kit.case.success_no)
    provider = kit.provider()
    result = kit.result("inquiry", lambda: provider.inquiry(request))
    _expect(result.state is State.SUCCESS, f"the inquiry gave {_summary(result)}")
    amount = result.data.get("amount")
    _expect(isinstance(amount, int) and not isinstance(amount, bool), "inquiry data must carry the bill amount (int)")


@check("balance",
       rule="balance() is SUCCESS with the deposit as an int in cost",
       fix="return ProviderResult(State.SUCCESS, cost=deposit_in_minor_units)")
def check_balance(kit: Kit) -> None:
    kit.needs(Capability.BALANCE)
    provider = kit.provider()
    result = kit.result("balance", provider.balance)
    _expect(result.state is State.SUCCESS and isinstance(result.cost, int), f"balance gave {_summary(result)}")


# -- callbacks -------------------------------------------------------------------------------
def _callbacks_of_a_pending_purchase(kit: Kit) -> tuple[Provider, str, list[ReceivedCallback]]:
    """A purchase of the pending number and the callbacks about it (made once per kit run:
    the callback checks share them)."""
    kit.needs(Capability.CALLBACKS)
    if kit.callbacks_seen is None:
        try:
            kit.callbacks_seen = _wait_for_callbacks(kit)
        except ContractViolation as exc:
            kit.callbacks_seen = exc
    if isinstance(kit.callbacks_seen, ContractViolation):
        raise ContractViolation(str(kit.callbacks_seen))
    return kit.callbacks_seen


def _wait_for_callbacks(kit: Kit) -> tuple[Provider, str, list[ReceivedCallback]]:
    case = kit.case
    if case.callbacks is None or case.pending_no is None:
        raise ContractViolation("the provider declares callbacks: give ContractCase.callbacks (the inbox "
                                "the simulator posts to) and pending_no (a number settled by callback)")
    provider = kit.provider()
    ref, result = kit.purchase(provider, case.pending_no)
    _expect(result.state in {State.PENDING, State.SUCCESS, State.FAILED},
            f"the pending number's purchase gave {_summary(result)}")
    try:
        received = case.callbacks.wait_for_reference(ref, timeout=case.callback_wait)
    except AssertionError:
        raise ContractViolation(f"no callback naming {ref} reached ContractCase.callbacks within "
                                f"{case.callback_wait} s: point the simulator (and the provider's "
                                "callback_url) at the inbox's url") from None
    return provider, ref, received


def _parse(kit: Kit, provider: Provider, headers: Mapping[str, str], body: bytes) -> ProviderResult | None:
    """The parsed callback, or None when the plugin refused it (CallbackRejected)."""
    try:
        return kit.result("parse_callback", lambda: provider.parse_callback(dict(headers), body))
    except CallbackRejected:
        return None


def _same(a: ProviderResult, b: ProviderResult) -> bool:
    fields = ("state", "ref_id", "provider_ref", "serial_number", "cost", "provider_code")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


@check("callback_genuine",
       rule="the simulator's own callback is accepted and read: the hub's reference in ref_id, and the "
            "state the status check reports",
       fix="verify the signature over the raw body, then read ref_id, state, serial number and cost")
def check_callback_genuine(kit: Kit) -> None:
    provider, ref, received = _callbacks_of_a_pending_purchase(kit)
    last = received[-1]
    result = _parse(kit, provider, last.headers, last.body)
    _expect(result is not None, "parse_callback refused the simulator's genuine callback")
    _expect(result.ref_id == ref, f"the callback's ref_id is {result.ref_id!r}, not the purchase's reference {ref!r}")
    _expect(not result.transport_failure, "a callback is an answer, not a transport failure")
    status = kit.status(provider, ref, kit.case.pending_no)
    if result.state.final and status.state.final:
        _expect(result.state is status.state,
                f"the callback says {result.state.value}, the status check {status.state.value}")


@check("callback_repeated",
       rule="parse_callback reads a request the same way every time: a duplicate or late callback gives "
            "the same result (the hub makes outcomes idempotent)",
       fix="keep no state in the provider instance; derive everything from the request")
def check_callback_repeated(kit: Kit) -> None:
    provider, _, received = _callbacks_of_a_pending_purchase(kit)
    first = [_parse(kit, provider, c.headers, c.body) for c in received]
    again = [_parse(kit, kit.provider(), c.headers, c.body) for c in reversed(received)][::-1]
    twice = [_parse(kit, provider, c.headers, c.body) for c in received]
    for a, b, c in zip(first, again, twice):
        _expect(a is not None and b is not None and c is not None,
                "a genuine callback was refused when it came again or out of order")
        _expect(_same(a, b) and _same(a, c), "the same callback read twice (or in another order) gave "
                                             f"different results: {_summary(a)} / {_summary(b)} / {_summary(c)}")


#: Headers providers commonly carry their proof in (tried with a wrong value, alone).
PROOF_HEADERS = ("X-Signature", "X-Hub-Signature", "X-Hub-Signature-256", "X-Callback-Signature",
                 "X-Callback-Token", "X-Webhook-Signature", "X-Sign", "Signature", "Authorization",
                 "X-Api-Key", "X-Token")
_TRANSPORT_HEADERS = {"host", "content-length", "content-type", "user-agent", "accept", "accept-encoding",
                      "connection", "date", "via", "x-forwarded-for", "x-request-id"}


def _forged(value: str) -> str:
    """``value`` with its last letter or digit changed (same length and shape)."""
    chars = list(value)
    for i in range(len(chars) - 1, -1, -1):
        ch = chars[i]
        if ch.isdigit():
            chars[i] = str((int(ch) + 1) % 10)
            return "".join(chars)
        if ch.isalpha() and ch.isascii():
            chars[i] = "a" if ch == "z" else "A" if ch == "Z" else chr(ord(ch) + 1)
            return "".join(chars)
    return value + "0"


def _tampered_values(body: bytes, ref: str) -> Iterator[tuple[str, bytes]]:
    """The body with one value changed at a time (JSON or form-encoded), except the reference."""
    try:
        data = json.loads(body)
        encode: Callable[[Any], bytes] = lambda obj: json.dumps(obj).encode()
    except ValueError:
        try:
            pairs = parse_qsl(body.decode(), strict_parsing=True, keep_blank_values=True)
        except (ValueError, UnicodeDecodeError):
            return
        data = dict(pairs)
        encode = lambda obj: urlencode(obj).encode()

    def leaves(node: Any, path: tuple) -> Iterator[tuple[tuple, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from leaves(value, (*path, index))
        else:
            yield path, node

    for path, value in list(leaves(data, ())):
        if value == ref or value is None:
            continue
        changed = (not value if isinstance(value, bool) else value + 1 if isinstance(value, int | float)
                   else _forged(str(value)))
        copy = json.loads(json.dumps(data))
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = changed
        yield ".".join(map(str, path)), encode(copy)


@check("callback_forged",
       rule="a callback whose proof does not verify is refused: no proof, a wrong value under any header "
            "the proof may travel in, another reference, or (unless weak_callback_auth) a changed body",
       fix="compute the expected signature over the raw body with the configuration's secret and compare it "
           "to the header's value with hmac.compare_digest; raise CallbackRejected otherwise")
def check_callback_forged(kit: Kit) -> None:
    provider, ref, received = _callbacks_of_a_pending_purchase(kit)
    genuine = received[-1]
    expected = _parse(kit, provider, genuine.headers, genuine.body)
    _expect(expected is not None, "parse_callback refused the simulator's genuine callback")
    content_type = {k.lower(): v for k, v in genuine.headers.items()}.get("content-type", "application/json")
    proof_headers = [k for k in genuine.headers if k.lower() not in _TRANSPORT_HEADERS]

    bare = _parse(kit, provider, {"Content-Type": content_type}, genuine.body)
    other_ref = _forged(ref)
    if ref.encode() in genuine.body:
        moved = _parse(kit, provider, genuine.headers, genuine.body.replace(ref.encode(), other_ref.encode()))
        _expect(moved is None, f"the genuine callback's headers with the reference changed to {other_ref} in the "
                               "body were accepted: the proof does not cover the body")
    if bare is not None:
        # Accepted without any header: the proof must be in the body (the reference check above).
        _expect(ref.encode() in genuine.body, "a callback without any header was accepted")
    else:
        lowered = {k.lower() for k in proof_headers}
        for name in [*proof_headers, *(h for h in PROOF_HEADERS if h.lower() not in lowered)]:
            value = _forged(genuine.headers.get(name) or "sha256=" + "0" * 64)
            forged = _parse(kit, provider, {"Content-Type": content_type, name: value}, genuine.body)
            _expect(forged is None, f"a callback with only {name}: {value!r} (a wrong value) was accepted")
        for name in proof_headers:
            headers = {**genuine.headers, name: _forged(genuine.headers[name])}
            forged = _parse(kit, provider, headers, genuine.body)
            _expect(forged is None or _same(forged, expected),
                    f"with a wrong {name} value the callback was accepted and read differently")
    if kit.provider_class.weak_callback_auth:
        return  # its proof does not cover the body; the hub confirms such callbacks by a status check
    for where, body in _tampered_values(genuine.body, ref):
        tampered = _parse(kit, provider, genuine.headers, body)
        _expect(tampered is None or _same(tampered, expected),
                f"the genuine headers with {where} changed in the body were accepted and read as "
                f"{_summary(tampered)}: the proof does not cover the body (declare weak_callback_auth = True "
                "if the provider's signature does not cover it)")
