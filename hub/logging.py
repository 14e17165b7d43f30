"""Structured logs (structlog): one JSON object per line, with the request id, tenant
and client bound from context variables so that every line of a request carries them.

``ROP_LOG_FORMAT``: ``json``, ``console`` (one readable line per event), or ``auto`` (the
default): console when stderr is a terminal (``make run``), JSON otherwise (a service
manager, a container, a file)."""
from __future__ import annotations

import logging
import sys

import structlog


def resolve_format(fmt: str) -> str:
    """``json`` or ``console``: ``auto`` is console when stderr is a terminal."""
    if fmt == "auto":
        try:
            return "console" if sys.stderr.isatty() else "json"
        except (AttributeError, ValueError):  # no stderr, or a closed one
            return "json"
    return fmt


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and the standard library's logging to write to stderr."""
    fmt = resolve_format(fmt)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        # filter_by_level first: a line below the configured level costs one level check,
        # not the whole chain of processors (the access log of every request at WARNING).
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("werkzeug", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def bind(**values: object) -> None:
    """Bind values (request_id, tenant_id, client_id …) to every later log line of this context."""
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()
