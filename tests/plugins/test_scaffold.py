"""The partner kit: scaffold -> pip install -> its own tests pass; the kit catches broken providers."""
from __future__ import annotations

import re
import subprocess
import sys

from hub.cli import main
from hub.providers.contract import Capability, Provider, ProviderResult, State
from hub.providers.testing import ContractCase, run_contract, view


def test_scaffold_installs_and_passes_its_own_tests(tmp_path, capsys):
    assert main(["plugins", "new", "acme_pay", "--directory", str(tmp_path)]) == 0
    package = tmp_path / "acme_pay"
    assert (package / "setup.cfg").read_text().count("acme_pay = rop_acme_pay.plugin") == 1
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--no-build-isolation", "--no-deps", str(package)], check=True)
    try:
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "--rootdir", str(package), str(package / "tests")],
                             check=False, cwd=package, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        passed = re.search(r"(\d+) passed", run.stdout)
        assert passed and int(passed.group(1)) == 16 and "failed" not in run.stdout  # 1 + 5 codes + 10 kit
    finally:
        subprocess.run(pip + ["uninstall", "-y", "rop-provider-acme-pay"], check=True)
    assert main(["plugins", "new", "acme_pay", "--directory", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["plugins", "new", "Bad-Name", "--directory", str(tmp_path)]) == 1


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
        if request.provider_sku == "NO-SUCH-SKU-0":
            raise TimeoutError("read timed out")
        return ProviderResult(State.SUCCESS, cost="10300", raw={})

    def check_status(self, request):
        return {"state": "success"}

    def parse_callback(self, headers, body):
        return ProviderResult(State.SUCCESS)

    def balance(self):
        return ProviderResult(State.SUCCESS, cost=1.5)


def test_contract_kit_fails_a_broken_provider_check_by_check():
    failures = run_contract(ContractCase(provider=BrokenProvider(view("broken")), sku="X",
                                         success_no="081212345678"))
    assert set(failures) >= {"declaration", "purchase_success", "status_same_reference",
                             "unknown_sku_does_not_raise", "forged_callback_rejected", "balance"}


def test_contract_kit_passes_on_the_sandbox():
    from rop_sandbox.plugin import SandboxProvider

    assert run_contract(ContractCase(provider=SandboxProvider(view("sandbox")), sku="TEL10",
                                     success_no="081212345678", failed_no="081200009999",
                                     postpaid_sku="BPJS")) == {}
