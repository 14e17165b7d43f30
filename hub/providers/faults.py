"""A TCP fault proxy: put it between a provider plugin and its provider's simulator to make
the network misbehave the way real providers' networks do, whatever HTTP client the plugin
uses (the hub's, its own, a vendor SDK).

    with FaultProxy(simulator.url) as proxy:
        provider = make_provider(proxy.url)          # the plugin talks to the proxy
        proxy.set(Fault.HOLD)                        # forward, never answer: a read timeout
        provider.purchase(...)                       # the simulator bought it; no answer came
        proxy.set(Fault.STATUS, status=502, only=2)  # the second request from now gets a 502
        proxy.set(Fault.REFUSE)                      # nothing listens: connection refused
        proxy.clear()

Faults (each applies to every request from now, or to the ``only``-th one):

- ``REFUSE``: the proxy stops listening; connections are refused before anything is sent.
- ``HOLD``: the request is forwarded (the provider acts on it) and the answer is never
  sent, until the client gives up (its read timeout) or ``hold_max`` seconds pass; with
  ``forward=False`` the request is lost on the way (the provider never receives it).
- ``CUT``: forwarded, then the connection is reset without an answer.
- ``STATUS``: an HTTP ``status`` answer with an HTML body instead of the provider's; with
  ``forward=True`` (the default for 5xx) the request reached the provider first.
- ``GARBAGE``: forwarded; the answer is HTTP 200 with an HTML maintenance page.
- ``TRUNCATED``: forwarded; the provider's own answer cut in half.
- ``SLOW``: forwarded; the provider's answer delayed by ``delay`` seconds.

One request per connection: the proxy answers ``Connection: close``. Plain HTTP only (a
simulator on 127.0.0.1).
"""
from __future__ import annotations

import enum
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit, urlunsplit


class Fault(str, enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    HOLD = "hold"
    CUT = "cut"
    STATUS = "status"
    GARBAGE = "garbage"
    TRUNCATED = "truncated"
    SLOW = "slow"


@dataclass
class _Setting:
    fault: Fault = Fault.PASS
    status: int = 502
    forward: bool = True
    delay: float = 0.0
    only: int | None = None  # the n-th request from the set() call; None: every request


@dataclass
class ProxiedRequest:
    """One request the proxy saw: what it did with it."""

    method: str
    path: str
    body: bytes
    fault: Fault
    forwarded: bool


_HTML = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


def _http_response(status: int, body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def _read_request(conn: socket.socket) -> bytes | None:
    """One whole HTTP/1.1 request (head and body: Content-Length or chunked), or None."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        length = int(headers.get(b"content-length", b"0") or 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
    return head + b"\r\n\r\n" + body


def _close_after_one(request: bytes) -> bytes:
    """The request with ``Connection: close`` (the upstream answers once, then closes)."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


def _with_connection_close(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n")
             if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_url`` that injects :class:`Fault`\\ s."""

    def __init__(self, upstream_url: str, *, hold_max: float = 120.0):
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the fault proxy fronts a plain http:// simulator, not {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.hold_max = hold_max
        self.requests: list[ProxiedRequest] = []
        self._setting = _Setting()
        self._seen_since_set = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._open_connections: set[socket.socket] = set()
        self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.url = urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path, parts.query, ""))

    # -- control ---------------------------------------------------------------------------
    def set(self, fault: Fault, *, status: int = 502, forward: bool | None = None, delay: float = 0.0,
            only: int | None = None) -> None:
        """Apply ``fault`` from now on (or to the ``only``-th request from now)."""
        if forward is None:
            forward = status >= 500 if fault is Fault.STATUS else True
        with self._lock:
            self._setting = _Setting(fault, status, forward, delay, only)
            self._seen_since_set = 0
        if fault is Fault.REFUSE:
            self._unlisten()
        elif self._listener is None:
            self._listen(self.port)

    def clear(self) -> None:
        """Back to a transparent proxy (and listening again)."""
        self.set(Fault.PASS)
        self._release_held()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stopped.set()
        self._unlisten()
        self._release_held()

    # -- listening -------------------------------------------------------------------------
    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name=f"fault-proxy-{listener.getsockname()[1]}").start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: refusing, or stopped
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _release_held(self) -> None:
        with self._lock:
            held = list(self._open_connections)
        for conn in held:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- one request -----------------------------------------------------------------------
    def _setting_for_next(self) -> _Setting:
        with self._lock:
            self._seen_since_set += 1
            setting = self._setting
            if setting.only is not None and setting.only != self._seen_since_set:
                return _Setting()
            return setting

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=self.hold_max) as upstream:
            upstream.sendall(_close_after_one(request))
            chunks = []
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._open_connections.add(conn)
        try:
            request = _read_request(conn)
            if request is None:
                return
            setting = self._setting_for_next()
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            forwarded = setting.forward or setting.fault not in (Fault.STATUS, Fault.HOLD)
            self.requests.append(ProxiedRequest(line[0], line[1] if len(line) > 1 else "/",
                                                request.partition(b"\r\n\r\n")[2], setting.fault, forwarded))
            try:
                response = self._forward(request) if forwarded else b""
            except OSError:
                response = _http_response(502, b"simulator unreachable", "text/plain")
            self._answer(conn, setting, response)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open_connections.discard(conn)
            conn.close()

    def _answer(self, conn: socket.socket, setting: _Setting, response: bytes) -> None:
        fault = setting.fault
        if fault is Fault.HOLD:
            conn.settimeout(0.05)
            deadline = time.monotonic() + self.hold_max
            while time.monotonic() < deadline and not self._stopped.is_set():
                try:
                    if not conn.recv(1):  # the client gave up and closed
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return
            return
        if fault is Fault.CUT:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closed by the caller: a reset, no answer
        if fault is Fault.STATUS:
            conn.sendall(_http_response(setting.status, _HTML, "text/html"))
        elif fault is Fault.GARBAGE:
            conn.sendall(_http_response(200, _HTML, "text/html"))
        elif fault is Fault.TRUNCATED:
            head, _, body = response.partition(b"\r\n\r\n")
            half = body[: max(1, len(body) // 2)]
            lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"content-length:")]
            conn.sendall(_with_connection_close(b"\r\n".join([*lines, b"Content-Length: %d" % len(half)])
                                                + b"\r\n\r\n" + half))
        else:
            if fault is Fault.SLOW:
                time.sleep(setting.delay)
            conn.sendall(_with_connection_close(response))
