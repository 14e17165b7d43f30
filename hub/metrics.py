"""Prometheus metrics of the hub.

Under gunicorn several processes serve ``/metrics``; ``rop web`` sets
``PROMETHEUS_MULTIPROC_DIR`` (under the instance folder) so that every process's
figures are summed by :func:`render_metrics`.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "rop_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "rop_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"]
)

DEPENDENCY_UNAVAILABLE = Counter(
    "rop_dependency_unavailable_total", "Requests answered 503 because a dependency was unreachable",
    ["dependency"]
)
RATE_LIMIT_UNENFORCED = Counter(
    "rop_rate_limit_unenforced_total", "Requests let through without a rate-limit count (Redis unreachable)"
)


def render_metrics() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, summed over processes when multiprocess."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
