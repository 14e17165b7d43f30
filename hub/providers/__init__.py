"""The Digital Provider Connector: the provider contract, provider configurations with
encrypted credentials, health and circuit breaking, and provider callbacks. See docs/plugins.md.

What other services call (``hub.providers.client``)::

    from hub.providers import client as providers
"""
from __future__ import annotations


def init_app(app, api) -> None:
    from hub.providers.api import bp

    api.register_blueprint(bp)
