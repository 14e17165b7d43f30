"""``rop plugins new NAME``: scaffold a provider plugin package from templates.

The package installs (``pip install -e plugins/NAME``) and passes its own tests at once:
``test_plugin_is_installed``, its code table code by code, and the contract test kit
(:mod:`hub.providers.testing`). The skeleton answers from memory; replace its bodies with
calls to the provider's API through :func:`hub.providers.http.provider_http`.
"""
from __future__ import annotations

import re
from pathlib import Path
from string import Template


class ScaffoldError(Exception):
    pass


SETUP_CFG = """\
[metadata]
name = rop-provider-$name
version = 0.1.0
description = ROP Hub provider plugin: $title

[options]
packages = find:
python_requires = >=3.11
install_requires =
    rop-hub

[options.packages.find]
exclude = tests

[options.entry_points]
rop =
    $name = rop_$name.plugin
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"
"""

SETUP_PY = "from setuptools import setup\n\nsetup()\n"

PLUGIN = '''\
"""The $title provider for ROP Hub.

Replace the bodies below with calls to the provider's API (hub.providers.http.provider_http()),
and CODE_TABLE with every response code the provider documents.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Mapping

from marshmallow import Schema, fields

from hub import hookimpl
from hub.providers.contract import (
    CallbackRejected,
    Capability,
    CatalogItem,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)

#: The provider's response codes -> normalized states. Every code needs a line and a test.
CODE_TABLE: dict[str, State] = {
    "00": State.SUCCESS,
    "01": State.PENDING,
    "40": State.FAILED,     # invalid customer number
    "41": State.REJECTED,   # product unavailable: the next provider may be tried
    "99": State.UNKNOWN,    # timeout at the provider
}

CATALOG = {
    "PULSA10": CatalogItem("PULSA10", "Pulsa 10,000", "pulsa", "telkomsel", 10_300),
}


class Settings(Schema):
    api_key = fields.String(required=True, metadata={"secret": True})
    # No default, ever: the hub generates one per configuration (callback_secret_setting).
    callback_secret = fields.String(load_default=None, allow_none=True, metadata={"secret": True})
    base_url = fields.String(load_default="https://api.example.invalid")


class ${klass}Provider(Provider):
    code = "$name"
    name = "$title"
    version = "0.1.0"
    capabilities = frozenset({Capability.PREPAID, Capability.CATALOG, Capability.CALLBACKS,
                              Capability.BALANCE})
    settings_schema = Settings
    code_table = CODE_TABLE
    callback_secret_setting = "callback_secret"

    def _result(self, code: str, ref_id: str, sku: str, message: str) -> ProviderResult:
        item = CATALOG.get(sku)
        return ProviderResult(self.map_code(code), provider_ref=f"$name-{ref_id}",
                              cost=item.cost if item else None, message=message,
                              raw={"rc": code, "ref_id": ref_id}, ref_id=ref_id, provider_code=code)

    def catalog(self) -> list[CatalogItem]:
        return list(CATALOG.values())

    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        if request.provider_sku not in CATALOG:
            return self._result("41", request.ref_id, request.provider_sku, "unknown product")
        if request.customer_no.endswith("9999"):
            return self._result("40", request.ref_id, request.provider_sku, "invalid number")
        return self._result("00", request.ref_id, request.provider_sku, "success")

    def check_status(self, request: StatusRequest) -> ProviderResult:
        code = "40" if request.customer_no.endswith("9999") else "00"
        return self._result(code, request.ref_id, request.provider_sku, "status")

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        secret = self.settings.get("callback_secret")
        if secret:  # without one, read it: the hub only checks the status of its reference
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            given = {k.lower(): v for k, v in headers.items()}.get("x-signature", "")
            if not hmac.compare_digest(given, expected):
                raise CallbackRejected("bad signature")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise CallbackRejected(f"unreadable body: {exc}") from exc
        return self._result(str(data["rc"]), str(data["ref_id"]), str(data.get("sku", "")), "callback")

    def balance(self) -> ProviderResult:
        return ProviderResult(State.SUCCESS, cost=1_000_000, raw={})


@hookimpl
def register_providers():
    return [${klass}Provider]
'''

TESTS = '''\
"""Tests of the $title provider plugin."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from rop_$name.plugin import CODE_TABLE, ${klass}Provider

from hub.providers.testing import ContractCase, ProviderContractTests, view


def test_plugin_is_installed():
    assert "$name" in {ep.name for ep in entry_points(group="rop")}
    from hub.plugins import build_plugin_manager

    assert build_plugin_manager().providers["$name"] is ${klass}Provider


@pytest.mark.parametrize("code,state", sorted(CODE_TABLE.items()))
def test_every_code_maps_to_its_state(code, state):
    assert ${klass}Provider(view("$name")).map_code(code) is state


class Test${klass}Contract(ProviderContractTests):
    @pytest.fixture
    def contract_case(self):
        return ContractCase(provider=${klass}Provider(view("$name", credentials={"api_key": "k",
                                                                         "callback_secret": "s"})),
                            sku="PULSA10", success_no="081212345678", failed_no="081200009999")
'''

README = """\
# rop-provider-$name

A ROP Hub provider plugin. Install: `pip install -e .`; test: `pytest tests`.
Read the hub's docs/plugins.md first.
"""


def scaffold(name: str, directory: Path) -> Path:
    """Create ``directory/name`` with a provider plugin package; return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,30}", name):
        raise ScaffoldError(f"plugin name {name!r}: use lower-case letters, digits and _ (2-31 chars)")
    target = Path(directory) / name
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    values = {"name": name, "title": name.replace("_", " ").title(),
              "klass": "".join(part.title() for part in name.split("_"))}
    files = {
        "setup.cfg": SETUP_CFG, "pyproject.toml": PYPROJECT, "setup.py": SETUP_PY, "README.md": README,
        f"rop_{name}/__init__.py": '"""' + values["title"] + ' provider plugin for ROP Hub."""\n',
        f"rop_{name}/plugin.py": PLUGIN, f"tests/test_{name}.py": TESTS,
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values))
    return target
