"""The app factory."""
from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from flask import Flask, send_from_directory

from hub import __version__
from hub.config import Config
from hub.db import Database
from hub.edge import init_edge
from hub.errors import register_error_handlers
from hub.logging import configure_logging
from hub.openapi import ErrorResponses, HubApi
from hub.state import HubState, resolve_redis_url
from hub.web import init_web

log = structlog.get_logger("hub.app")

#: Service packages, in start-up order. Each has ``init_app(app, api)`` that registers
#: its blueprints, handlers and periodic jobs.
SERVICE_PACKAGES: tuple[str, ...] = (
    "hub.ops",
    "hub.tenancy",
    "hub.bus",
    "hub.plugins",
    "hub.providers",
    "hub.wallets",
    "hub.products",
    "hub.transactions",
    "hub.bulk",
)


class HubFlask(Flask):
    """Flask, telling a plain function from a coroutine function by its code's flags.

    Flask calls :meth:`ensure_sync` for every request hook, view and teardown of every request
    (13 times a purchase here); its ``inspect.iscoroutinefunction`` takes about eight calls
    to say no. A plain function or a method of one says it by one flag of its code object
    (what ``inspect`` reads in the end); anything else goes Flask's way."""

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        plain = func.__func__ if type(func) is types.MethodType else func
        if type(plain) is types.FunctionType and not hasattr(plain, "_is_coroutine_marker"):
            return self.async_to_sync(func) if plain.__code__.co_flags & inspect.CO_COROUTINE else func
        return super().ensure_sync(func)


def create_app(config: Config | None = None, **overrides: Any) -> Flask:
    """Create and configure a hub app.

    :param config: the configuration; read from the environment when omitted.
    :param overrides: passed to :meth:`Config.from_env` when ``config`` is omitted
        (tests give ``database_url``, ``redis_url``, ``instance_path``).
    :return: the Flask app, with ``app.extensions["rop"]`` holding its :class:`HubState`.
    """
    config = config or Config.from_env(**overrides)
    configure_logging(config.log_level, config.log_format)
    from hub.tenancy.service import use_cheap_password_hashing

    use_cheap_password_hashing(config.testing)

    app = HubFlask("hub", instance_path=str(config.instance_path), instance_relative_config=True)
    app.config.update(
        SECRET_KEY=config.secret_key,
        TESTING=config.testing,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=max(config.limits.body_json, config.limits.body_callback, config.limits.body_bulk),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        API_TITLE="ROP Hub API",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
    )

    redis_url, origin = resolve_redis_url(config)
    state = HubState(config=config, db=Database(config.database_url, driver_shortcuts=config.driver_shortcuts),
                     redis_url=redis_url, redis_origin=origin)
    app.extensions["rop"] = state
    log.info("hub configured", database=config.database_kind, redis=origin,
             redis_url=redis_url if origin == "embedded" else _redact(redis_url),
             instance=str(config.instance_path))

    init_web(app)
    init_edge(app)  # after init_web: the request id is set before the edge can refuse a request
    api = HubApi(app, spec_kwargs={"info": {"description": "The Ralali Open Platform hub: "
                                            "digital products, wallets, transactions and bulk."},
                                   "extra_plugins": [ErrorResponses()]})
    register_error_handlers(app)  # after Api(): ours replace flask-smorest's JSON errors
    _serve_docs_assets(app)
    for name in SERVICE_PACKAGES:
        importlib.import_module(name).init_app(app, api)
    from rop_admin import init_admin  # the admin UI at /admin, after every service (and plugin)

    init_admin(app)
    return app


def _serve_docs_assets(app: Flask) -> None:
    """Serve Swagger UI's files from the installed ``swagger_ui_bundle`` (no CDN)."""
    import swagger_ui_bundle

    assets = Path(swagger_ui_bundle.swagger_ui_path)

    @app.route("/docs/assets/<path:filename>")
    def docs_assets(filename: str):
        return send_from_directory(assets, filename, max_age=3600)


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
