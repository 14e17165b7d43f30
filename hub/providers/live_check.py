"""A live check of a stored provider configuration (``rop providers check CONFIG``): is the
provider reachable, are the credentials accepted, is the catalog readable, what is the
balance — each asked of the provider itself, as Airbyte's ``check`` asks a connector.

The check calls the provider even when the configuration is switched off (check before
switching on) and records nothing in its health: it is not traffic. It never buys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.db import UnitOfWork
from hub.providers import crypto
from hub.providers.contract import Capability, CatalogUnavailable, Provider, ProviderResult, State
from hub.providers.http import ProviderHttpError


@dataclass
class CheckLine:
    """One line of the check: ``ok``, ``failed`` or ``skipped``, and what was seen."""

    name: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


def _transport_cause(exc: BaseException) -> ProviderHttpError | None:
    """The transport failure behind a ``CatalogUnavailable``, if that is what it was."""
    seen = exc
    while seen is not None:
        if isinstance(seen, ProviderHttpError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _answered(result: ProviderResult) -> str:
    code = f" (code {result.provider_code})" if result.provider_code else ""
    return f"{result.state.value}{code}: {result.message or 'no message'}"


def _probe_balance(provider: Provider) -> list[CheckLine]:
    result = provider.balance()
    if result.transport_failure or result.data.get("not_sent"):
        return [CheckLine("reachable", "failed", result.message or result.state.value),
                CheckLine("credentials accepted", "skipped", "the provider was not reached"),
                CheckLine("balance", "skipped", "the provider was not reached")]
    lines = [CheckLine("reachable", "ok", "the balance call was answered")]
    if result.state is State.SUCCESS and isinstance(result.cost, int):
        return [*lines, CheckLine("credentials accepted", "ok"), CheckLine("balance", "ok", f"{result.cost:,}")]
    return [*lines, CheckLine("credentials accepted", "failed", f"the balance call answered {_answered(result)}"),
            CheckLine("balance", "skipped", "credentials refused")]


def _probe_catalog(provider: Provider, *, first: bool) -> list[CheckLine]:
    try:
        items = provider.catalog()
    except CatalogUnavailable as exc:
        transport = _transport_cause(exc)
        if first and transport is not None:
            return [CheckLine("reachable", "failed", str(transport)),
                    CheckLine("catalog readable", "skipped", "the provider was not reached")]
        prefix = [CheckLine("reachable", "ok", "the catalog call was answered"),
                  CheckLine("credentials accepted", "failed", str(exc))] if first else []
        return [*prefix, CheckLine("catalog readable", "failed", str(exc))]
    available = sum(1 for i in items if i.available)
    prefix = [CheckLine("reachable", "ok", "the catalog call was answered"),
              CheckLine("credentials accepted", "ok")] if first else []
    return [*prefix, CheckLine("catalog readable", "ok", f"{len(items)} products, {available} available")]


def _probes(cls: type[Provider], provider: Provider) -> list[CheckLine]:
    """Ask the balance (when declared), then the catalog (when declared)."""
    if Capability.BALANCE in cls.capabilities:
        lines = _probe_balance(provider)
        if Capability.CATALOG in cls.capabilities:
            accepted = lines[1].status == "ok"
            lines += _probe_catalog(provider, first=False) if accepted else \
                [CheckLine("catalog readable", "skipped", "the provider was not reached" if lines[0].status != "ok"
                           else "credentials refused")]
        return lines
    if Capability.CATALOG in cls.capabilities:
        return _probe_catalog(provider, first=True)
    return [CheckLine("reachable", "skipped", "the provider declares neither balance nor catalog: "
                                              "nothing to ask it without buying")]


def check_config(uow: UnitOfWork, config_id: str) -> list[CheckLine]:
    """Check one configuration against its provider, live. :raise NotFound: no such configuration."""
    from hub.providers.service import _host, _keys, callback_url, get_config, provider_for

    row = get_config(uow, config_id)
    cls = _host().providers.get(row.provider_code)
    lines = [CheckLine("provider installed", "ok" if cls else "failed",
                       f"{cls.name} {cls.version}" if cls else f"no installed plugin provides {row.provider_code!r}")]
    if cls is None:
        return lines
    try:
        crypto.decrypt(_keys(), row.credentials_encrypted)
    except crypto.CredentialsError as exc:
        return [*lines, CheckLine("credentials readable", "failed", str(exc))]
    provider = provider_for(row)
    lines.append(CheckLine("switched on", "ok" if row.enabled else "skipped",
                           "" if row.enabled else "switched off: checked anyway, no traffic goes to it"))
    try:
        lines += _probes(cls, provider)
    except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed check, shown in one line
        lines.append(CheckLine("provider call", "failed", f"the plugin raised {type(exc).__name__}: {exc}"))
    if Capability.CALLBACKS in cls.capabilities:
        url = callback_url(row)
        lines.append(CheckLine("callback URL", "ok", f"{url} (give it to the provider)") if url else
                     CheckLine("callback URL", "failed", "unknown: set ROP_PUBLIC_URL to the hub's address as "
                                                         "providers reach it"))
    return lines
