"""The contract kit certifies: five broken versions of a plugin (and a stub that makes no
HTTP call) each fail the check that enforces the rule they break, a correct plugin passes,
and checks of undeclared capabilities are skipped with the reason."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from hub.providers.contract import Capability, State
from hub.providers.testing import CHECKS, CallbackInbox, ContractCase, run_check, run_contract, view
from tests.providers.partner.acme import AcmeProvider
from tests.providers.partner.acme_simulator import AcmeSimulator
from tests.providers.partner.broken import BROKEN, MemoryStub


@pytest.fixture
def inbox():
    with CallbackInbox() as server:
        yield server


@pytest.fixture
def simulator():
    with AcmeSimulator(api_key="key", api_secret="secret", callback_secret="cbsecret") as server:
        yield server


def case_for(cls, simulator, inbox) -> ContractCase:
    def make(base_url):
        return cls(view("acme", settings={"base_url": base_url, "timeout": 1.0},
                        credentials={"api_key": "key", "api_secret": "secret", "callback_secret": "cbsecret"},
                        callback_url=inbox.url))

    return ContractCase(make_provider=make, simulator_url=simulator.url, callbacks=inbox, callback_wait=3.0, sku="PULSA10",
                        success_no="081200000001", failed_no="081200000002", pending_no="081200000003")


def test_a_correct_plugin_passes_every_check_and_undeclared_ones_are_skipped(simulator, inbox):
    report = run_contract(case_for(AcmeProvider, simulator, inbox))
    assert report.failures == {}, str(report)
    assert report.skipped == {"inquiry": "AcmeProvider does not declare the 'postpaid' capability"}
    assert set(report.passed) == set(CHECKS) - {"inquiry"}


@pytest.mark.parametrize("broken", list(BROKEN), ids=lambda cls: cls.__name__)
def test_each_broken_plugin_fails_the_check_of_the_rule_it_breaks(simulator, inbox, broken):
    report = run_contract(case_for(broken, simulator, inbox))
    expected = BROKEN[broken]
    assert expected in report.failures, str(report)
    message = report.failures[expected]
    assert f"rule: {CHECKS[expected].rule}" in message and "fix:" in message  # it teaches the rule


def test_the_failure_message_says_what_happened_and_why_it_loses_money(simulator, inbox):
    from tests.providers.partner.broken import TimeoutIsRejected

    result = run_check(case_for(TimeoutIsRejected, simulator, inbox), "purchase_timeout")
    assert result.status == "failed"
    message = result.message
    assert "purchase() answered rejected" in message and "expected unknown" in message
    assert "an answer that cannot prove the purchase did not happen is UNKNOWN" in message
    assert "buy it again elsewhere" in message


def test_a_stub_that_makes_no_http_call_cannot_be_certified(simulator, inbox):
    report = run_contract(case_for(MemoryStub, simulator, inbox))
    assert {"calls_reach_the_provider", "purchase_refused", "purchase_timeout", "status_refused",
            "catalog_errors_raise", "callback_forged"} <= set(report.failures), str(report)


def test_a_network_plugin_without_a_simulator_fails_instead_of_skipping(inbox):
    case = ContractCase(make_provider=lambda base_url: AcmeProvider(view(
        "acme", settings={"base_url": "http://127.0.0.1:9"},
        credentials={"api_key": "k", "api_secret": "s", "callback_secret": "c"})), sku="PULSA10",
        success_no="081200000001")
    report = run_contract(case)
    assert "ContractCase.simulator_url is missing" in report.failures["purchase_timeout"]


class NoCallbacks(AcmeProvider):
    capabilities = frozenset({Capability.PREPAID})
    not_found_grace = None
    code_table: ClassVar[dict[str, State]] = {k: v for k, v in AcmeProvider.code_table.items() if v is not State.NOT_FOUND}


def test_checks_of_undeclared_capabilities_are_skipped_with_the_reason(simulator, inbox):
    report = run_contract(case_for(NoCallbacks, simulator, inbox))
    assert report.failures == {}, str(report)
    for name in ("catalog", "catalog_errors_raise", "balance", "callback_genuine", "callback_forged",
                 "callback_repeated", "inquiry"):
        assert "does not declare" in report.skipped[name]
    assert "declares no not_found_grace" in report.skipped["status_not_found"]


GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()


def test_the_guide_lists_every_check_with_the_rule_it_enforces():
    missing = [name for name, spec in CHECKS.items() if f"| `{name}` | {spec.rule} |" not in GUIDE]
    assert not missing, f"docs/plugins.md does not list {missing} with their rules"


def test_the_guide_documents_every_attribute_of_the_provider_class():
    from hub.providers.contract import Provider

    table = GUIDE.split("## The Provider class", 1)[1].split("###", 1)[0]
    missing = [attr for attr in Provider.__annotations__ if f"`{attr}`" not in table]
    assert not missing, f"docs/plugins.md's Provider table misses {missing}"
