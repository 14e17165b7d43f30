"""The SSRF guard of every outbound call to an address a tenant or an operator names
(webhook URLs, provider endpoints).

Two rules:

1. **An address is judged by where it really goes.** IPv6 forms that carry an IPv4 address
   — IPv4-mapped ``::ffff:127.0.0.1``, IPv4-compatible ``::127.0.0.1``, IPv4-translated
   ``::ffff:0:127.0.0.1``, NAT64 ``64:ff9b::7f00:1``, 6to4 ``2002:7f00:1::`` — are judged
   by the IPv4 address inside them as well (Python's ``is_global`` calls several of them
   global). An address must be global and not multicast; the local-use NAT64 prefix
   ``64:ff9b:1::/48`` and Teredo (``2001::/32``, not global) are never public.
2. **The connection goes to the address that was checked.** A guard that resolves a name
   and then lets the HTTP client resolve it again can be fooled by a DNS answer that
   changes in between (DNS rebinding). :class:`GuardedTransport` resolves the host once
   per connection, refuses it if *any* of its addresses is not public, and connects to a
   checked address itself; the URL is untouched, so the ``Host`` header, TLS SNI and
   certificate verification still use the name.

``allow_private`` (``ROP_WEBHOOK_ALLOW_PRIVATE``, a provider configuration's setting) skips
rule 1 for private networks, never rule 2. Calls through this transport do not use the
environment's HTTP proxies (``HTTP_PROXY``): a proxy would resolve and connect on its own.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpcore
import httpx

#: ``resolve(host, port)`` → the host's addresses, as strings. The default asks the system
#: (``getaddrinfo``); a test gives its own to answer a name without DNS.
Resolver = Callable[[str, int], list[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, the well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local-use: never public
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated), :: and ::1 aside


class DestinationRefused(Exception):
    """The destination is not allowed (not public), or its name does not resolve."""


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, translated, NAT64, 6to4,
    Teredo's server and client)."""
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    elif address in _NAT64 or address in _TRANSLATED or (address in _COMPATIBLE and int(address) > 1):
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _judge_ipv4(address: ipaddress.IPv4Address) -> str | None:
    if address.is_multicast:
        return "a multicast address"
    if not address.is_global:
        return "not a public address"
    return None


def refusal(address: str) -> str | None:
    """Why ``address`` (an IP address) must not be called, or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _judge_ipv4(ip)
    if ip in _NAT64_LOCAL:
        return "a local-use NAT64 address"
    for inner in embedded_ipv4(ip):
        why = _judge_ipv4(inner)
        if why:
            return f"an address carrying the IPv4 address {inner}, {why}"
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class Guard:
    """Resolve a destination once and judge every address it has."""

    allow_private: bool = False
    resolver: Resolver = field(default=system_resolver)

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host`` (an IP literal is its own address).

        :raise DestinationRefused: when the name does not resolve, or any of its addresses
            is not public (unless private ones are allowed).
        """
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            found = [host]
        except ValueError:
            try:
                found = list(self.resolver(host, port))
            except (OSError, UnicodeError) as exc:
                raise DestinationRefused(f"cannot resolve {host}: {exc}") from exc
            if not found:
                raise DestinationRefused(f"cannot resolve {host}: no address")
        if not self.allow_private:
            for address in found:
                why = refusal(address)
                if why:
                    raise DestinationRefused(f"{host} is {why}" if address == host
                                             else f"{host} resolves to {address}, {why}")
        return found


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the guard resolved and checked."""

    def __init__(self, guard: Guard):
        self.guard = guard

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable | None = None) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.addresses(host, port)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                           socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every new connection goes through a :class:`Guard`.

    Keep-alive connections are reused per scheme, host and port, as httpx does; each was
    made to a checked address."""

    def __init__(self, guard: Guard, *, verify: bool | object = True, limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )


def guarded_client(*, allow_private: bool = False, resolver: Resolver | None = None, verify: bool | object = True,
                   limits: httpx.Limits | None = None, **kwargs) -> httpx.Client:
    """An ``httpx.Client`` whose connections go through a :class:`Guard` (no environment proxies)."""
    guard = Guard(allow_private=allow_private, resolver=resolver or system_resolver)
    return httpx.Client(transport=GuardedTransport(guard, verify=verify, limits=limits), trust_env=False, **kwargs)
