"""Tools for a provider's simulator and its tests: a real HTTP server in a thread, an inbox
that records the callbacks a simulator posts, a bounded poll, and a configuration view.
All re-exported by :mod:`hub.providers.testing`."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from hub.providers.contract import ProviderConfigView


def view(provider_code: str, settings: dict | None = None, credentials: dict | None = None,
         callback_url: str | None = None, config_id: str = "pcf_test") -> ProviderConfigView:
    """A :class:`ProviderConfigView` for tests (credentials given in clear; private
    addresses allowed, for a simulator on 127.0.0.1)."""
    return ProviderConfigView(id=config_id, provider_code=provider_code, tenant_id=None,
                              settings=settings or {}, credentials=credentials or {},
                              callback_url=callback_url, allow_private=True)


class LiveServer:
    """A WSGI app served over real HTTP on 127.0.0.1 in a thread (tests and simulators)::

        with LiveServer(wsgi_app) as server:
            server.url  # http://127.0.0.1:PORT
    """

    def __init__(self, wsgi_app, host: str = "127.0.0.1", port: int = 0):
        from werkzeug.serving import make_server

        self.server = make_server(host, port, wsgi_app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class ReceivedCallback:
    """One request a simulator posted: headers as the hub passes them to ``parse_callback``."""

    path: str
    headers: dict[str, str]
    body: bytes


class CallbackInbox(LiveServer):
    """An HTTP endpoint that records every callback posted to it and answers 200: give its
    ``url`` to the simulator (and to the provider's ``callback_url``) in tests::

        with CallbackInbox() as inbox:
            ... simulator posts to inbox.url ...
            callbacks = inbox.wait_for_reference("ref-1")
    """

    def __init__(self):
        self.received: list[ReceivedCallback] = []
        self._lock = threading.Lock()
        super().__init__(self._app)

    def _app(self, environ, start_response):
        from werkzeug.wrappers import Request

        request = Request(environ)
        with self._lock:
            self.received.append(ReceivedCallback(request.path, dict(request.headers), request.get_data()))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"received": true}']

    def about(self, reference: str) -> list[ReceivedCallback]:
        """The callbacks whose body names ``reference``, in the order they arrived."""
        needle = reference.encode()
        with self._lock:
            return [c for c in self.received if needle in c.body]

    def wait_for_reference(self, reference: str, timeout: float = 10.0) -> list[ReceivedCallback]:
        """Wait until a callback about ``reference`` arrived; return those about it."""
        return wait_for(lambda: self.about(reference), timeout=timeout)
