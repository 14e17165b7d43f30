"""The client's address behind trusted proxies (``ROP_TRUSTED_PROXIES``).

Without the setting, the address is the TCP peer's and ``X-Forwarded-For`` is ignored:
anyone can send that header, so it names nobody. With it:

- a count ``N`` (``1`` for one reverse proxy in front of the hub): the hub sits behind
  exactly N proxies, each appending the address it saw to ``X-Forwarded-For``; the client
  is the N-th address from the right (werkzeug's ``ProxyFix(x_for=N)``). A request with
  fewer addresses than that keeps the peer's address.
- a comma-separated list of addresses and networks (``10.0.0.0/8, 192.0.2.7``): when the
  peer is one of them, ``X-Forwarded-For`` is read from the right, skipping trusted
  addresses; the first untrusted one is the client. A peer outside the list is the client.

:class:`TrustedProxies` rewrites ``REMOTE_ADDR`` before the app sees the request (the
peer's own address stays in ``environ["rop.peer_addr"]``), so ``request.remote_addr`` is
the client everywhere: rate limits, callback records, logs.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(value: str) -> int | tuple[Network, ...]:
    """``""`` → 0 (none), ``"2"`` → 2, ``"10.0.0.0/8, ::1"`` → networks.

    :raise ConfigError: on anything else.
    """
    from hub.config import ConfigError

    value = (value or "").strip()
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    networks = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"ROP_TRUSTED_PROXIES must be a number of proxies or a comma-separated list of "
                              f"addresses and networks; {part!r} is neither") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: Any, networks: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: int | tuple[Network, ...]) -> str | None:
    """The client's address for a request from ``peer`` carrying ``X-Forwarded-For: forwarded_for``."""
    if not trusted or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if isinstance(trusted, int):
        if len(hops) < trusted:
            return peer
        found = _address(hops[-trusted])
        return str(found) if found is not None else peer
    if not _trusted(_address(peer or ""), trusted):
        return peer
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return peer  # a hop that is no address: trust nothing it says
        if not _trusted(found, trusted):
            return str(found)
    found = _address(hops[0])
    return str(found) if found is not None else peer


class TrustedProxies:
    """WSGI middleware: ``REMOTE_ADDR`` becomes the client's address (see the module's doc)."""

    def __init__(self, app: Callable, setting: str):
        self.app = app
        self.trusted = parse_trusted_proxies(setting)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if self.trusted:
            peer = environ.get("REMOTE_ADDR")
            environ["rop.peer_addr"] = peer
            client = client_address(peer, environ.get("HTTP_X_FORWARDED_FOR"), self.trusted)
            if client is not None:
                environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)


def rate_key(address: str | None) -> str:
    """The key an address is counted under: itself for IPv4, its /64 for IPv6 (one subscriber
    usually holds a whole /64, so counting single v6 addresses would count nobody)."""
    found = _address(address or "")
    if found is None:
        return address or "unknown"
    if found.version == 6:
        if found.ipv4_mapped is not None:
            return str(found.ipv4_mapped)
        return str(ipaddress.ip_network(f"{found}/64", strict=False))
    return str(found)
