"""The contract test kit: the standard conformance suite for any provider class.

In a plugin's tests::

    from hub.providers.testing import ContractCase, ProviderContractTests

    class TestMyProviderContract(ProviderContractTests):
        @pytest.fixture
        def contract_case(self, my_simulator):
            return ContractCase(provider=MyProvider(view_for(my_simulator)),
                                sku="PLN20", success_no="0812000000", failed_no="08120000xxxx")

Every ``test_contract_*`` method runs one check. :func:`run_contract` runs them all and
returns the failures (used to prove the kit catches a broken provider).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Self

import pytest
from marshmallow import Schema, missing

from hub.providers.contract import (
    CallbackRejected,
    Capability,
    CatalogItem,
    InquiryRequest,
    Provider,
    ProviderConfigView,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)


@dataclass
class ContractCase:
    """What the kit needs to exercise a provider."""

    provider: Provider
    sku: str  # a prepaid SKU the provider sells
    success_no: str  # a customer number that succeeds
    failed_no: str | None = None  # a number the provider fails or rejects (definitively)
    postpaid_sku: str | None = None
    postpaid_no: str | None = None
    #: a provider instance configured against an address where nothing listens, if any
    unreachable: Provider | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def view(provider_code: str, settings: dict | None = None, credentials: dict | None = None,
         callback_url: str | None = None, config_id: str = "pcf_test") -> ProviderConfigView:
    """A :class:`ProviderConfigView` for tests (credentials given in clear)."""
    return ProviderConfigView(id=config_id, provider_code=provider_code, tenant_id=None,
                              settings=settings or {}, credentials=credentials or {},
                              callback_url=callback_url, allow_private=True)


def _ref() -> str:
    return "ct-" + uuid.uuid4().hex[:16]


def _is_result(value: Any, what: str) -> ProviderResult:
    assert isinstance(value, ProviderResult), f"{what} returned {type(value).__name__}, not ProviderResult"
    assert isinstance(value.state, State), f"{what}: state {value.state!r} is not a State"
    assert value.cost is None or isinstance(value.cost, int), f"{what}: cost must be int minor units"
    return value


def check_declaration(case: ContractCase) -> None:
    cls = type(case.provider)
    for attr in ("code", "name", "version"):
        assert isinstance(getattr(cls, attr, None), str) and getattr(cls, attr), f"{attr} must be a string"
    assert isinstance(cls.settings_schema, type) and issubclass(cls.settings_schema, Schema), \
        "settings_schema must be a marshmallow Schema class"
    assert all(isinstance(c, Capability) for c in cls.capabilities), "capabilities must be Capability values"
    assert cls.code_table, "code_table must map the provider's codes"
    assert all(isinstance(s, State) for s in cls.code_table.values()), "code_table values must be States"
    if Capability.CALLBACKS in cls.capabilities:
        setting = cls.callback_secret_setting
        assert setting, "a provider with callbacks names the credential they are signed with (callback_secret_setting)"
        field = cls.settings_schema().fields.get(setting)
        assert field is not None, f"callback_secret_setting {setting!r} is not a field of settings_schema"
        assert field.load_default in (None, "") or field.load_default is missing, \
            f"{setting} must have no default: a constant secret lets anyone sign callbacks"


def check_catalog(case: ContractCase) -> None:
    if Capability.CATALOG not in case.provider.capabilities:
        return
    items = case.provider.catalog()
    assert items, "catalog is empty"
    for item in items:
        assert isinstance(item, CatalogItem), f"catalog item {item!r} is not a CatalogItem"
        assert isinstance(item.cost, int) and item.cost >= 0, f"{item.provider_sku}: cost must be int >= 0"
    assert case.sku in {i.provider_sku for i in items}, f"{case.sku} is not in the catalog"


def check_purchase_success(case: ContractCase) -> None:
    ref = _ref()
    result = _is_result(case.provider.purchase(PurchaseRequest(ref, case.sku, case.success_no)), "purchase")
    assert result.state == State.SUCCESS, f"purchase of the success number gave {result.state.value}"
    assert result.provider_ref, "a successful purchase has a provider reference"
    assert result.raw is not None, "raw payload missing"


def check_status_same_reference(case: ContractCase) -> None:
    ref = _ref()
    case.provider.purchase(PurchaseRequest(ref, case.sku, case.success_no))
    result = _is_result(case.provider.check_status(StatusRequest(ref, case.sku, case.success_no)),
                        "check_status")
    assert result.state == State.SUCCESS, f"status of a successful purchase gave {result.state.value}"


def check_purchase_failure(case: ContractCase) -> None:
    if case.failed_no is None:
        return
    result = _is_result(case.provider.purchase(PurchaseRequest(_ref(), case.sku, case.failed_no)), "purchase")
    assert result.state in {State.FAILED, State.REJECTED}, f"failing number gave {result.state.value}"


def check_unknown_sku_does_not_raise(case: ContractCase) -> None:
    result = _is_result(case.provider.purchase(PurchaseRequest(_ref(), "NO-SUCH-SKU-0", case.success_no)),
                        "purchase")
    assert result.state != State.SUCCESS, "an unknown SKU cannot succeed"


def check_inquiry(case: ContractCase) -> None:
    if Capability.POSTPAID not in case.provider.capabilities or not case.postpaid_sku:
        return
    result = _is_result(case.provider.inquiry(InquiryRequest(_ref(), case.postpaid_sku,
                                                             case.postpaid_no or case.success_no)), "inquiry")
    assert result.state == State.SUCCESS, f"inquiry gave {result.state.value}"
    assert isinstance(result.data.get("amount"), int), "inquiry data must carry the bill amount (int)"


def check_forged_callback_rejected(case: ContractCase) -> None:
    """With its callback secret configured (the case's own, or one set here), a provider
    refuses a callback signed with anything else."""
    if Capability.CALLBACKS not in case.provider.capabilities:
        return
    provider, setting = case.provider, type(case.provider).callback_secret_setting
    if setting and not {**provider.config.settings, **provider.config.credentials}.get(setting):
        config = replace(provider.config, credentials={**provider.config.credentials, setting: "contract-kit-secret"})
        provider = type(provider)(config)
    body = b'{"ref_id": "forged", "rc": "00", "data": {"ref_id": "forged", "rc": "00", "status": "Sukses"}}'
    try:
        provider.parse_callback({"Content-Type": "application/json", "X-Hub-Signature": "sha1=00",
                                 "X-Sandbox-Signature": "00"}, body)
    except CallbackRejected:
        return
    raise AssertionError("an unsigned/forged callback was accepted")


def check_balance(case: ContractCase) -> None:
    if Capability.BALANCE not in case.provider.capabilities:
        return
    result = _is_result(case.provider.balance(), "balance")
    assert result.state == State.SUCCESS and isinstance(result.cost, int), "balance must give an int in cost"


def check_unreachable_is_not_an_exception(case: ContractCase) -> None:
    if case.unreachable is None:
        return
    result = _is_result(case.unreachable.purchase(PurchaseRequest(_ref(), case.sku, case.success_no)),
                        "purchase (unreachable)")
    assert result.state in {State.REJECTED, State.UNKNOWN}, \
        f"an unreachable provider gave {result.state.value} (expected rejected or unknown)"


CHECKS: dict[str, Callable[[ContractCase], None]] = {
    fn.__name__.removeprefix("check_"): fn for fn in (
        check_declaration, check_catalog, check_purchase_success, check_status_same_reference,
        check_purchase_failure, check_unknown_sku_does_not_raise, check_inquiry,
        check_forged_callback_rejected, check_balance, check_unreachable_is_not_an_exception)
}


def run_contract(case: ContractCase) -> dict[str, str]:
    """Run every check; return ``{check: failure}`` (empty when the provider conforms)."""
    failures = {}
    for name, check in CHECKS.items():
        try:
            check(case)
        except Exception as exc:  # noqa: BLE001 - a raising provider fails the check
            failures[name] = f"{type(exc).__name__}: {exc}"
    return failures


class ProviderContractTests:
    """Subclass in a plugin's tests and provide a ``contract_case`` fixture."""

    @pytest.fixture
    def contract_case(self) -> ContractCase:  # pragma: no cover - subclasses override
        raise NotImplementedError("provide a contract_case fixture")

    def test_contract_declaration(self, contract_case):
        check_declaration(contract_case)

    def test_contract_catalog(self, contract_case):
        check_catalog(contract_case)

    def test_contract_purchase_success(self, contract_case):
        check_purchase_success(contract_case)

    def test_contract_status_same_reference(self, contract_case):
        check_status_same_reference(contract_case)

    def test_contract_purchase_failure(self, contract_case):
        check_purchase_failure(contract_case)

    def test_contract_unknown_sku_does_not_raise(self, contract_case):
        check_unknown_sku_does_not_raise(contract_case)

    def test_contract_inquiry(self, contract_case):
        check_inquiry(contract_case)

    def test_contract_forged_callback_rejected(self, contract_case):
        check_forged_callback_rejected(contract_case)

    def test_contract_balance(self, contract_case):
        check_balance(contract_case)

    def test_contract_unreachable_is_not_an_exception(self, contract_case):
        check_unreachable_is_not_an_exception(contract_case)


class LiveServer:
    """A WSGI app served over real HTTP on 127.0.0.1 in a thread (tests and simulators)."""

    def __init__(self, wsgi_app, host: str = "127.0.0.1", port: int = 0):
        import threading

        from werkzeug.serving import make_server

        self.server = make_server(host, port, wsgi_app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy (or fail after ``timeout``)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
