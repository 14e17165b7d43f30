"""Every hook: a plugin implementing it is called as the spec says (and the meta-tests)."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest
from flask import Blueprint

from hub import hookimpl
from hub.app import create_app
from hub.context import CallContext
from hub.plugins import build_plugin_manager, hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if hasattr(fn, "rop_spec"))


class Recorder:
    """A plugin implementing every hook, recording its calls."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def register_providers(self):
        return []

    @hookimpl
    def catalog_loaded(self, provider_code, config_id, products):
        self.calls.append(("catalog_loaded", {"provider_code": provider_code, "n": len(products)}))

    @hookimpl
    def price_product(self, tenant_id, product_code, cost):
        return cost * 2 if product_code == "VIP" else None

    @hookimpl
    def before_wallet_debit(self, ctx, wallet_id, amount):
        return "over the daily limit" if amount > 1_000_000 else None

    @hookimpl
    def validate_customer_number(self, product_type, customer_no):
        return "blocked number" if customer_no == "081299999999" else None

    @hookimpl
    def route_transaction(self, product_code, candidates):
        return list(reversed(candidates)) if product_code == "REVERSE" else None

    @hookimpl
    def transaction_state_changed(self, transaction, old_state, new_state):
        self.calls.append(("transaction_state_changed", {"old": old_state, "new": new_state}))

    @hookimpl
    def register_bulk_parsers(self):
        return [{"name": "tsv"}]

    @hookimpl
    def handle_event(self, event_type, payload):
        self.calls.append(("handle_event", {"type": event_type, **payload}))


def host_with(plugin):
    return build_plugin_manager(extra=[plugin])


def test_every_hook_is_a_documented_typed_spec():
    assert len(HOOKS) >= 12
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        doc = fn.__doc__ or ""
        assert ":returns:" in doc and ".. versionadded:: 0.1" in doc and "Called" in doc, name
        assert fn.__annotations__.get("return") is not None, f"{name} has no return annotation"
        first = fn.rop_spec.get("firstresult", False)
        assert first == ("Stops at first non-None result" in doc), f"{name}: firstresult not documented"


def test_every_hook_appears_in_docs_plugins_md():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    missing = [name for name in HOOKS if f"`{name}`" not in docs]
    assert not missing, f"docs/plugins.md does not document {missing}"


def test_every_hook_has_a_test():
    source = "".join(p.read_text() for p in (ROOT / "tests" / "plugins").glob("test_*.py"))
    tested = set(re.findall(r"def test_(\w+)", source))
    missing = [name for name in HOOKS if not any(name in t for t in tested)]
    assert not missing, f"no test named after {missing}"


def test_a_misspelt_hookimpl_is_refused():
    class Typo:
        @hookimpl
        def route_transactions(self, candidates):
            return candidates

    try:
        host_with(Typo())
    except Exception as exc:  # noqa: BLE001
        assert "route_transactions" in str(exc)
    else:
        raise AssertionError("a misspelt hook was accepted")


def test_register_providers_collects_provider_classes():
    assert {"sandbox", "digiflazz"} <= set(build_plugin_manager().providers)


def test_catalog_loaded_calls_every_implementation():
    recorder = Recorder()
    host_with(recorder).hook.catalog_loaded(provider_code="sandbox", config_id="pcf_1", products=[1, 2])
    assert recorder.calls == [("catalog_loaded", {"provider_code": "sandbox", "n": 2})]


def test_price_product_first_result_wins_over_the_built_in_margin():
    hook = host_with(Recorder()).hook
    for code, price in (("VIP", 200), ("STD", 105)):
        assert hook.price_product(tenant_id="t", product_code=code, sku=code, cost=100, currency="IDR",
                                  product={"margin": 5}) == price


def test_before_wallet_debit_veto_stops_at_the_first_reason():
    hook = host_with(Recorder()).hook
    ctx = CallContext.system(tenant_id="t")
    assert hook.before_wallet_debit(ctx=ctx, wallet_id="w", amount=2_000_000, currency="IDR",
                                    reason="x") == "over the daily limit"
    assert hook.before_wallet_debit(ctx=ctx, wallet_id="w", amount=10, currency="IDR", reason="x") is None


def test_validate_customer_number_plugin_answers_before_the_built_in_rules():
    hook = host_with(Recorder()).hook
    kwargs = {"product_type": "pulsa", "operator": "telkomsel"}
    assert hook.validate_customer_number(customer_no="081299999999", **kwargs) == "blocked number"
    assert hook.validate_customer_number(customer_no="081234567890", **kwargs) == ""
    assert "not an Indonesian mobile number" in hook.validate_customer_number(customer_no="12", **kwargs)


def test_route_transaction_plugin_order_overrides_the_default_router():
    hook = host_with(Recorder()).hook
    ctx = CallContext.system(tenant_id="t")

    class C:
        def __init__(self, cost):
            self.cost, self.health = cost, {}

    a, b = C(2), C(1)
    assert hook.route_transaction(ctx=ctx, product_code="REVERSE", sku="REVERSE", candidates=[a, b]) == [b, a]
    assert hook.route_transaction(ctx=ctx, product_code="ANY", sku="ANY", candidates=[a, b]) == [b, a]  # by cost


def test_transaction_state_changed_calls_every_implementation():
    recorder = Recorder()
    host_with(recorder).hook.transaction_state_changed(ctx=None, transaction={}, old_state="processing",
                                                       new_state="succeeded")
    assert recorder.calls == [("transaction_state_changed", {"old": "processing", "new": "succeeded"})]


def test_register_bulk_parsers_collects_parsers():
    assert [{"name": "tsv"}] in host_with(Recorder()).hook.register_bulk_parsers()


def test_register_admin_views_mounts_plugin_blueprints(temp_plugin, config):
    temp_plugin("adminx", """
        from flask import Blueprint
        from hub import hookimpl

        bp = Blueprint("adminx", __name__, url_prefix="/admin/adminx")

        @bp.get("/")
        def page():
            return "plugin admin page"

        @hookimpl
        def register_admin_views(app, admin):
            return [bp]
    """)
    app = create_app(config)
    try:
        assert "/admin/adminx/" in {rule.rule for rule in app.url_map.iter_rules()}
        assert app.test_client().get("/admin/adminx/").status_code == 302  # behind the admin login
    finally:
        app.extensions["rop"].close()


def test_register_blueprints_and_register_cli_commands_are_in_test_manager():
    source = (ROOT / "tests" / "plugins" / "test_manager.py").read_text()
    assert "def test_register_blueprints_is_applied" in source and "def test_register_cli_commands" in source


def test_handle_event_sees_every_event_through_the_bus(temp_plugin, config):
    module = temp_plugin("listener", """
        from hub import hookimpl

        seen = []

        @hookimpl
        def handle_event(event_type, payload, envelope):
            seen.append((event_type, payload.get("ref_id"), envelope.get("id")))
    """)
    import sys

    from hub.bus import publish
    from hub.db import unit_of_work
    from hub.providers.messages import ProviderCallbackReceived
    from hub.worker import make_worker

    app = create_app(config)
    state = app.extensions["rop"]
    try:
        state.redis.flushdb()
        with app.app_context(), unit_of_work(state.db) as uow:
            message = publish(CallContext.system(tenant_id="ten_x"), uow, ProviderCallbackReceived(
                callback_id="pcb_1", provider_code="sandbox", config_id="pcf_1", ref_id="r-1",
                state="success"))
            uow.commit()
        make_worker(app).work(burst=True)
        assert sys.modules[module].seen == [("provider.callback_received", "r-1", message.id)]
    finally:
        state.close()


def test_hook_specs_are_pluggy_specs():
    pm = pluggy.PluginManager("rop")
    pm.add_hookspecs(hookspecs)
    assert sorted(n for n in dir(pm.hook) if not n.startswith("_")) == HOOKS
    assert Blueprint


class OldNames:
    """A plugin written against hub 0.1: the hook argument ``sku`` (now ``product_code``)."""

    @hookimpl
    def price_product(self, sku, cost):
        return cost * 3 if sku == "OLD" else None


def test_the_old_sku_argument_still_works_for_one_release_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="use 'product_code'"):
        hook = host_with(OldNames()).hook
    assert hook.price_product(tenant_id="t", product_code="OLD", sku="OLD", cost=10, currency="IDR",
                              product={"margin": 0}) == 30


def test_contract_requests_accept_the_old_provider_sku_name_with_a_deprecation_warning():
    from hub.providers.contract import CatalogItem, PurchaseRequest

    with pytest.warns(DeprecationWarning, match="use sku"):
        request = PurchaseRequest("r1", provider_sku="TEL10", customer_no="0812")
    assert request.sku == "TEL10"
    with pytest.warns(DeprecationWarning):
        assert CatalogItem("TEL10", "Pulsa", "pulsa", "telkomsel", 10).provider_sku == "TEL10"
