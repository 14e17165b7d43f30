"""The partner kit: ``rop plugins new`` -> pip install -> the package's own tests pass (its
provider speaks HTTP through the hub's client to the simulator it ships, and passes the
contract kit); a re-install under another distribution name is warned about."""
from __future__ import annotations

import re
import subprocess

import pytest

from hub.cli import main
from hub.providers.contract import Capability, Provider, ProviderResult, State
from hub.providers.testing import CHECKS, CallbackInbox, ContractCase, run_contract, view


def test_scaffold_installs_and_passes_its_own_tests_including_the_contract_kit(tmp_path, capsys, scratch_env):
    assert main(["plugins", "new", "acme_pay", "--directory", str(tmp_path),
                 "--distribution", "acme-pay-connector"]) == 0
    package = tmp_path / "acme_pay"
    setup_cfg = (package / "setup.cfg").read_text()
    assert "name = acme-pay-connector" in setup_cfg and setup_cfg.count("acme_pay = rop_acme_pay.plugin") == 1
    assert "rop-hub>=0.2,<1" in setup_cfg
    for made in (".github/workflows/test.yml", "README.md", "rop_acme_pay/simulator.py", "tests/test_acme_pay.py"):
        assert (package / made).is_file(), made
    plugin = (package / "rop_acme_pay/plugin.py").read_text()
    assert "provider_http()" in plugin and "failure_result(exc" in plugin  # HTTP through the hub's client
    assert "pytest -ra tests" in (package / ".github/workflows/test.yml").read_text()
    scratch_env.install(package)
    try:
        run = subprocess.run([scratch_env.python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                              "--rootdir", str(package), str(package / "tests")],
                             check=False, cwd=package, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        passed = re.search(r"(\d+) passed", run.stdout)
        codes = len(re.findall(r'^    "\d\d": State\.', plugin, re.MULTILINE))
        # installed + the code table + every kit check but one: postpaid is not declared
        assert passed and int(passed.group(1)) == 1 + codes + len(CHECKS) - 1, run.stdout[-2000:]
        assert "1 skipped" in run.stdout and "does not declare the 'postpaid' capability" in run.stdout
    finally:
        scratch_env.uninstall("acme-pay-connector")
    assert main(["plugins", "new", "acme_pay", "--directory", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["plugins", "new", "Bad-Name", "--directory", str(tmp_path)]) == 1
    assert main(["plugins", "new", "fine", "--directory", str(tmp_path), "--distribution", "-bad"]) == 1
    assert "distribution name '-bad'" in capsys.readouterr().err


def test_reinstalling_under_another_distribution_name_is_not_silent(tmp_path, scratch_env):
    assert main(["plugins", "new", "twice_pay", "--directory", str(tmp_path)]) == 0
    package = tmp_path / "twice_pay"
    scratch_env.install(package)
    setup_cfg = package / "setup.cfg"
    setup_cfg.write_text(setup_cfg.read_text().replace("name = rop-provider-twice-pay", "name = twice-pay-renamed"))
    scratch_env.install(package)
    out = subprocess.run([scratch_env.python, "-m", "hub.cli", "plugins", "list"], check=False,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("providers=twice_pay") == 1  # loaded once
    assert "warning: entry point 'twice_pay' is installed by two distributions" in out.stderr
    assert "rop-provider-twice-pay" in out.stderr and "twice-pay-renamed" in out.stderr


class BrokenProvider(Provider):
    """Raises on a timeout, forgets the provider reference, accepts forged callbacks."""

    code = "broken"
    name = "Broken"
    capabilities = frozenset({Capability.CALLBACKS, Capability.BALANCE})
    settings_schema = None  # not a Schema
    code_table = {"00": "success"}  # noqa: RUF012 - not States, on purpose

    def catalog(self):
        return []

    def purchase(self, request):
        if request.sku == "NO-SUCH-SKU-0":
            raise TimeoutError("read timed out")
        return ProviderResult(State.SUCCESS, cost="10300", raw={})

    def check_status(self, request):
        return {"state": "success"}

    def parse_callback(self, headers, body):
        return ProviderResult(State.SUCCESS)

    def balance(self):
        return ProviderResult(State.SUCCESS, cost=1.5)


def test_contract_kit_fails_a_broken_provider_check_by_check():
    report = run_contract(ContractCase(make_provider=lambda base_url: BrokenProvider(view("broken")), sku="X",
                                       success_no="081212345678"))
    assert set(report.failures) >= {"declaration", "purchase_success", "status_same_reference",
                                    "unknown_sku_does_not_raise", "callback_forged", "balance"}
    assert "simulator_url is missing" in report.failures["purchase_timeout"]


@pytest.fixture
def inbox():
    with CallbackInbox() as server:
        yield server


def test_contract_kit_passes_on_the_sandbox_and_skips_its_network_checks(inbox):
    from rop_sandbox.plugin import SandboxProvider

    report = run_contract(ContractCase(
        make_provider=lambda base_url: SandboxProvider(view("sandbox", settings={"callback_delay": 0.05},
                                                            credentials={"callback_secret": "s"},
                                                            callback_url=inbox.url)),
        callbacks=inbox, sku="TEL10", success_no="081212345678", failed_no="081200009999",
        pending_no="081200008888", not_found_no="081200002222", postpaid_sku="BPJS"))
    assert report.failures == {}, str(report)
    assert {"status_not_found", "callback_forged", "inquiry"} <= set(report.passed)
    assert all("makes_network_calls = False" in reason for reason in report.skipped.values())
