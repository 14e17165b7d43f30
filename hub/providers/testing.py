"""The partner's test kit: the contract checks as pytest tests, and the tools to run a
provider's simulator in tests. One import for a plugin's tests::

    import pytest
    from hub.providers.testing import ContractCase, ProviderContractTests, view

    class TestAcmeContract(ProviderContractTests):
        @pytest.fixture
        def contract_case(self, callback_inbox):
            with AcmeSimulator(callback_url=callback_inbox.url) as simulator:
                yield ContractCase(
                    make_provider=lambda base_url: AcmeProvider(view(
                        "acme", settings={"base_url": base_url, "timeout": 1.0},
                        credentials={"api_key": "k", "callback_secret": "s"},
                        callback_url=callback_inbox.url)),
                    simulator_url=simulator.url, callbacks=callback_inbox,
                    sku="PULSA10", success_no="081200000001", failed_no="081200000002",
                    pending_no="081200000003")

Every check becomes a test ``test_contract_<check>``; a check that does not apply (a
capability the provider does not declare) is skipped with the reason. Outside pytest,
:func:`run_contract` returns a :class:`ContractReport`. docs/plugins.md, "The contract kit",
lists the checks and the rule each enforces.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.providers.faults import Fault, FaultProxy
from hub.providers.kit import (
    CHECKS,
    CheckResult,
    ContractCase,
    ContractReport,
    ContractViolation,
    run_check,
    run_contract,
)
from hub.providers.simulators import CallbackInbox, LiveServer, ReceivedCallback, view, wait_for

__all__ = [
    "CHECKS",
    "CallbackInbox",
    "CheckResult",
    "ContractCase",
    "ContractReport",
    "ContractViolation",
    "Fault",
    "FaultProxy",
    "LiveServer",
    "ProviderContractTests",
    "ReceivedCallback",
    "run_check",
    "run_contract",
    "view",
    "wait_for",
]


class ProviderContractTests:
    """Subclass in a plugin's tests and provide a ``contract_case`` fixture; it may use the
    ``callback_inbox`` fixture (a started :class:`CallbackInbox`)."""

    @pytest.fixture
    def callback_inbox(self) -> Iterator[CallbackInbox]:
        with CallbackInbox() as inbox:
            yield inbox

    @pytest.fixture
    def contract_case(self) -> ContractCase:  # pragma: no cover - subclasses override
        raise NotImplementedError("provide a contract_case fixture")


def _contract_test(name: str):
    def test(self, contract_case: ContractCase) -> None:
        result = run_check(contract_case, name)
        if result.status == "skipped":
            pytest.skip(result.message)
        if result.status == "failed":
            pytest.fail(f"contract check {name!r} failed: {result.message}", pytrace=False)

    test.__name__ = f"test_contract_{name}"
    test.__doc__ = CHECKS[name].rule
    return test


for _name in CHECKS:
    setattr(ProviderContractTests, f"test_contract_{_name}", _contract_test(_name))
