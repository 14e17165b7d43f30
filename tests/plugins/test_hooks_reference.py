"""docs/hooks.md documents every hook (when it runs, what it returns, what raising does) with
an example, and every example is a working plugin: registered on a plugin manager and called
as the hub calls it."""
from __future__ import annotations

import io
import re
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from flask import Flask

from hub.context import CallContext
from hub.plugins import build_plugin_manager, hookspecs
from hub.providers.client import Route
from hub.providers.contract import CatalogItem

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "hooks.md").read_text()
HOOKS = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "rop_spec")]


def _section(name: str) -> str:
    match = re.search(rf"^### `{name}`\n(.*?)(?=^### |^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert match, f"docs/hooks.md has no section for {name}"
    return match.group(1)


def _example(name: str) -> types.ModuleType:
    code = re.search(r"```python\n(.*?)```", _section(name), re.DOTALL)
    assert code, f"docs/hooks.md: {name} has no example"
    module = types.ModuleType(f"hooks_md_example_{name}")
    exec(compile(code.group(1), f"docs/hooks.md ({name})", "exec"), module.__dict__)  # noqa: S102
    return module


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_reference_section(name):
    section = _section(name)
    for part in ("**Runs**", "**Returns**", "**Raising**", "*Since 0.1"):
        assert part in section, f"{name}: no {part}"
    signature = section.strip().splitlines()[0]
    assert signature.startswith(f"`{name}(") and "Any]" not in signature.replace("dict[str, Any]", "")
    assert ("First result wins" in section) == getattr(hookspecs, name).rop_spec.get("firstresult", False)


def test_every_hook_spec_is_typed_without_any():
    for name in HOOKS:
        annotations = getattr(hookspecs, name).__annotations__
        assert all(a.strip() != "Any" and "list[Any]" not in a for a in annotations.values()), name


def _host(name: str):
    return build_plugin_manager(extra=[_example(name)])


def test_the_register_providers_example():
    module = _example("register_providers")
    assert build_plugin_manager(extra=[module]).providers["example"] is module.ExampleProvider


def test_the_catalog_loaded_example():
    _host("catalog_loaded").hook.catalog_loaded(
        provider_code="sandbox", config_id="pcf_1", products=[CatalogItem("BIG", "Big", "game", "x", 2_000_000)])


def test_the_price_product_example():
    hook = _host("price_product").hook
    product = {"code": "TEL10", "margin": 200}
    assert hook.price_product(tenant_id="ten_vip", product_code="TEL10", sku="TEL10", cost=10_000,
                              currency="IDR", product=product) == 10_100
    assert hook.price_product(tenant_id="ten_other", product_code="TEL10", sku="TEL10", cost=10_000,
                              currency="IDR", product=product) == 10_200  # the built-in rule


def test_the_before_wallet_debit_example():
    hook = _host("before_wallet_debit").hook
    ctx = CallContext.system(tenant_id="t")
    assert "needs approval" in hook.before_wallet_debit(ctx=ctx, wallet_id="w", amount=6_000_000, currency="IDR",
                                                        reason="x")
    assert hook.before_wallet_debit(ctx=ctx, wallet_id="w", amount=10, currency="IDR", reason="x") is None


def test_the_validate_customer_number_example():
    hook = _host("validate_customer_number").hook
    assert "zone id" in hook.validate_customer_number(product_type="game", operator=None, customer_no="1234")
    assert hook.validate_customer_number(product_type="game", operator=None, customer_no="1234:5") is None


def test_the_route_transaction_example():
    hook = _host("route_transaction").hook
    slow = Route("pcf_a", "sandbox", "TEL10", 100, health={"success_rate": 0.5})
    good = Route("pcf_b", "sandbox", "TEL10", 900, health={"success_rate": 0.99})
    assert hook.route_transaction(ctx=CallContext.system(tenant_id="t"), product_code="TEL10", sku="TEL10",
                                  candidates=[slow, good]) == [good, slow]


def test_the_transaction_state_changed_example():
    _host("transaction_state_changed").hook.transaction_state_changed(
        ctx=CallContext.system(tenant_id="t"), transaction={"id": "trx_1"}, old_state="processing",
        new_state="review")


def test_the_register_bulk_parsers_example():
    parsers = [p for group in _host("register_bulk_parsers").hook.register_bulk_parsers() for p in group]
    rows = list(parsers[0].parse(io.BytesIO(b"r1|TEL10|081234567890\n\nr2|PLN20|12345678901\n")))
    assert rows == [{"ref_id": "r1", "product_code": "TEL10", "customer_no": "081234567890"},
                    {"ref_id": "r2", "product_code": "PLN20", "customer_no": "12345678901"}]


def test_the_register_blueprints_example():
    app = Flask(__name__)
    for blueprints in _host("register_blueprints").hook.register_blueprints(app=app):
        for blueprint in blueprints:
            app.register_blueprint(blueprint)
    assert app.test_client().get("/example/status").get_json() == {"ok": True}


def test_the_register_admin_views_example():
    from rop_admin import AdminView

    views = [v for group in _host("register_admin_views").hook.register_admin_views(app=None, admin=None)
             for v in group]
    assert len(views) == 1 and isinstance(views[0], AdminView)


def test_the_register_cli_commands_example():
    cli = click.Group("rop")
    _host("register_cli_commands").hook.register_cli_commands(cli=cli)
    assert CliRunner().invoke(cli, ["example-hello"]).output == "hello\n"


def test_the_handle_event_example():
    _host("handle_event").hook.handle_event(event_type="transaction.failed", payload={"error": "x"},
                                            envelope={"id": "evt_1"})
