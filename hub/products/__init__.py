"""The Digital Product Service: catalog, provider offers, availability, tenant pricing and
catalog sync (docs/products.md).

What other services call: :mod:`hub.products.client`.
"""
from __future__ import annotations


def init_app(app, api) -> None:
    from hub.products import messages  # noqa: F401  (registers the event types)
    from hub.products.api import bp

    api.register_blueprint(bp)
