"""Request plumbing: the request id, one unit of work per request, access logs and metrics."""
from __future__ import annotations

import logging
import os
import re
import time

import structlog
from flask import Flask, g, request

from hub import logging as hub_logging
from hub.db import UnitOfWork
from hub.metrics import HTTP_LATENCY, HTTP_REQUESTS
from hub.state import current_state

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
log = structlog.get_logger("hub.http")
_ACCESS_LOG = logging.getLogger("hub.http")  # its level decides, before any work, whether a line is made


def request_uow() -> UnitOfWork:
    """The unit of work of the current request, opened on first use and closed at teardown.

    GET and HEAD requests get a read-only session (on SQLite it does not take the write lock).
    """
    uow = g.get("_rop_uow")
    if uow is None:
        readonly = request.method in ("GET", "HEAD", "OPTIONS")
        uow = UnitOfWork(current_state().db.session(readonly=readonly))
        g._rop_uow = uow
    return uow


def init_web(app: Flask) -> None:
    """Install the request hooks on ``app``."""

    @app.before_request
    def _start_request():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()  # as uuid4().hex
        g.request_started = time.perf_counter()
        hub_logging.clear()
        hub_logging.bind(request_id=g.request_id)

    @app.after_request
    def _finish_request(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        started = g.get("request_started")
        elapsed = time.perf_counter() - started if started else 0.0
        endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
        HTTP_REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, endpoint).observe(elapsed)
        if _ACCESS_LOG.isEnabledFor(logging.INFO) and request.path not in ("/healthz", "/metrics"):
            log.info("request", method=request.method, path=request.path,
                     status=response.status_code, duration_ms=round(elapsed * 1000, 2))
        return response

    @app.teardown_request
    def _close_uow(_exc):
        uow = g.pop("_rop_uow", None)
        if uow is not None:
            if not uow.committed:
                uow.session.rollback()
            uow.close()
        hub_logging.clear()
