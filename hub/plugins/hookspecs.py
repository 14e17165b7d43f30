"""The hooks of ROP Hub: the partner's manual.

Every hook is a function here. A plugin implements some of them with ``@hookimpl``::

    from hub import hookimpl

    @hookimpl
    def register_providers():
        return [MyProvider]

Implementations may take fewer arguments than the spec names (pluggy passes only those
asked for), so hooks evolve by adding arguments only. ``firstresult`` hooks stop at the
first implementation returning something other than ``None``; the hub's built-in
behaviour is registered through the same hooks with ``trylast=True`` so any plugin can
override it. A misspelt hook name fails start-up (``pm.check_pending()``). docs/hooks.md documents
each hook with an example; docs/plugins.md says what the hub promises about them
("Compatibility").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.plugins.markers import hookspec

if TYPE_CHECKING:  # pragma: no cover
    import click
    from flask import Blueprint, Flask
    from flask_admin import Admin, BaseView

    from hub.context import CallContext
    from hub.plugins.types import BulkParser, ProductView, TransactionView
    from hub.providers.client import Route
    from hub.providers.contract import CatalogItem, Provider

#: The hooks' arguments renamed in 0.2, still passed under their old names until hub 0.3.
_SKU_RENAMED = DeprecationWarning("the hook argument 'sku' is deprecated: use 'product_code' "
                                  "(the hub's product code; removed in hub 0.3)")


# -- providers ------------------------------------------------------------------------------
@hookspec
def register_providers() -> list[type[Provider]]:
    """Register provider classes (the Provider Connector contract, ``hub.providers.contract``).

    Called once per app at start-up, when the plugin manager is built.

    :returns: a list of :class:`hub.providers.contract.Provider` subclasses. Every
        implementation's list is collected; two classes with the same ``code`` stop start-up.

    .. versionadded:: 0.1
    """


# -- products / catalog ---------------------------------------------------------------------
@hookspec
def catalog_loaded(provider_code: str, config_id: str, products: list[CatalogItem]) -> None:
    """The catalog of one provider configuration was fetched and stored.

    Called after the products service committed a successful sync of one configuration
    (``rop catalog sync``, the scheduled sync, the ``SyncCatalog`` command); never after a
    failed one, which changes nothing.

    :param provider_code: the provider's code.
    :param config_id: the provider configuration the catalog came from.
    :param products: the :class:`hub.providers.contract.CatalogItem` list that was loaded.
    :returns: nothing; every implementation is called.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True, warn_on_impl_args={"sku": _SKU_RENAMED})
def price_product(tenant_id: str, product_code: str, cost: int, currency: str, product: ProductView,
                  sku: str) -> int | None:
    """Return the sell price (minor units) of a product for a tenant.

    Called by the products service whenever it prices a product for a tenant: in
    ``GET /v1/products`` and, at purchase, in ``hub.products.client.get_for_sale``.

    :param tenant_id: the tenant being priced for.
    :param product_code: the hub's product code.
    :param cost: what the cheapest active offer on a provider configuration the tenant may
        use (a healthy one when there is any) charges the hub, in minor units.
    :param currency: ISO 4217 code.
    :param product: the product as a dict (read-only): ``code``, ``name``, ``category``,
        ``brand``, ``type``, ``nominal``, ``currency``, and ``margin``: what the platform
        price list and the tenant's own price rules add to the cost (docs/products.md).
    :param sku: deprecated alias of ``product_code`` (removed in hub 0.3).
    :returns: the price in minor units (a non-negative ``int``; anything else is refused
        with ``TypeError``), or ``None`` to let the next plugin decide.
        Stops at first non-None result. The built-in rule (``trylast``) returns
        ``cost + product["margin"]``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``product`` carries the price rules' ``margin``; ``sku`` is
       renamed ``product_code``.
    """


# -- wallets --------------------------------------------------------------------------------
@hookspec(firstresult=True)
def before_wallet_debit(ctx: CallContext, wallet_id: str, amount: int, currency: str,
                        reason: str) -> str | None:
    """Veto a debit (or hold) on a wallet before it is made: limits, fraud rules.

    Called by the wallets service inside the debit's transaction, before any row changes.

    :param ctx: the caller's context (tenant, client).
    :param wallet_id: the wallet to be debited.
    :param amount: positive amount in minor units.
    :param currency: ISO 4217 code.
    :param reason: what the debit is for (e.g. ``"transaction:trx_..."``).
    :returns: a reason string to refuse the debit, or ``None`` to allow it.
        Stops at first non-None result (one veto is enough).

    .. versionadded:: 0.1
    """


# -- transactions ---------------------------------------------------------------------------
@hookspec(firstresult=True)
def validate_customer_number(product_type: str, operator: str | None, customer_no: str) -> str | None:
    """Check a customer number (phone, meter, account) before a transaction is accepted.

    Called by the transactions service when a purchase or inquiry is created.

    :param product_type: ``pulsa``, ``data``, ``pln``, ``ewallet``, ``game``, ``bill``...
    :param operator: the operator/brand of the product (``telkomsel``, ``pln``...), if any.
    :param customer_no: the number as the client sent it.
    :returns: an error message when the number is invalid, ``""`` when it is known to
        be valid, ``None`` when this plugin has no opinion. Stops at first non-None result.
        Built-in rules (``trylast``): Indonesian mobile prefixes, PLN meter/customer numbers.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True, warn_on_impl_args={"sku": _SKU_RENAMED})
def route_transaction(ctx: CallContext, product_code: str, candidates: list[Route],
                      sku: str) -> list[Route] | None:
    """Choose the order in which provider configurations are tried for one transaction.

    Called by the transactions service before the first provider call.

    :param ctx: the caller's context.
    :param product_code: the hub's product code.
    :param candidates: the usable routes (:class:`hub.providers.client.Route`: ``config_id``,
        ``provider_code``, ``sku`` (the provider's code), ``cost``, ``priority``,
        ``health``); unhealthy or switched-off configurations are already removed.
    :param sku: deprecated alias of ``product_code`` (removed in hub 0.3).
    :returns: the candidates in the order to try (a subset is allowed), or ``None`` to
        let the next plugin decide. Stops at first non-None result. The built-in router
        (``trylast``) orders by cost, then the offer's priority (lower first), then success rate.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``sku`` is renamed ``product_code``; a route's ``provider_sku`` is ``sku``.
    """


@hookspec
def transaction_state_changed(ctx: CallContext, transaction: TransactionView, old_state: str,
                              new_state: str) -> None:
    """A transaction moved from one state to another (docs/transactions.md, "Lifecycle").

    Called after the change is committed.

    :param ctx: the context of whoever caused the change.
    :param transaction: the transaction (read-only).
    :param old_state: the previous state.
    :param new_state: the new state.
    :returns: nothing; every implementation is called.

    .. versionadded:: 0.1
    """


# -- bulk -----------------------------------------------------------------------------------
@hookspec
def register_bulk_parsers() -> list[BulkParser]:
    """Register more input formats for bulk jobs.

    Called when the bulk service builds its parser table.

    :returns: a list of parsers (:class:`hub.plugins.types.BulkParser`): objects with
        ``name`` (format name, e.g. ``"xlsx"``), ``content_types`` (list of str) and
        ``parse(stream) -> Iterator[dict]`` yielding one row dict (``ref_id``,
        ``product_code``, ``customer_no``) per line.

    .. versionadded:: 0.1
    """


# -- the app --------------------------------------------------------------------------------
@hookspec
def register_blueprints(app: Flask) -> list[Blueprint]:
    """Add Flask blueprints (pages or APIs) to the hub app.

    Called once by the app factory, after the hub's own services.

    :param app: the app being built.
    :returns: a list of blueprints; each is registered on the app.

    .. versionadded:: 0.1
    """


@hookspec
def register_admin_views(app: Flask, admin: Admin) -> list[BaseView | Blueprint] | None:
    """Add views to the admin UI at ``/admin`` (Flask-Admin).

    Called once when the admin UI is mounted.

    :param app: the app.
    :param admin: the ``flask_admin.Admin`` of the hub (its views already added).
    :returns: a list of views to add — subclasses of ``rop_admin.AdminView`` (Flask-Admin's
        ``BaseView`` behind the admin login; mark writes with ``rop_admin.requires_role``) —
        or plain blueprints under ``/admin`` (behind the login, CSRF on every POST); or None.

    .. versionadded:: 0.1
    """


@hookspec
def register_cli_commands(cli: click.Group) -> None:
    """Add commands to the ``rop`` command line.

    Called when ``rop`` starts (before the arguments are parsed), without an app.

    :param cli: the root ``rop`` click group: call ``cli.add_command(...)``.
    :returns: nothing.

    .. versionadded:: 0.1
    """


# -- events ---------------------------------------------------------------------------------
@hookspec
def handle_event(event_type: str, payload: dict[str, Any], envelope: dict[str, Any]) -> None:
    """See every event the hub publishes (``transaction.succeeded``, ``wallet.debited``...).

    Called from a worker, once per event, after the event was committed.
    An exception is logged and retried with the event's handler.

    :param event_type: the event's type, e.g. ``"provider.callback_received"``.
    :param payload: its payload.
    :param envelope: the whole envelope (id, tenant_id, occurred_at, correlation_id...).
    :returns: nothing; every implementation is called.

    .. versionadded:: 0.1
    """
