"""HTTP of the products service (docs/products.md, "The API").

Reads are served from the Redis cache (:func:`hub.products.service.cached`): the key holds
the catalog version, the tenant and the state of its provider configurations, so a change
committed by any process is seen by every web process on its next request.
"""
from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from marshmallow import EXCLUDE, ValidationError

from hub.auth import current_ctx, requires, take_rate_count
from hub.edge import Blueprint, check_loaded
from hub.errors import ValidationFailed
from hub.products import service
from hub.products.schemas import ProductArgs, ProductListSchema, ProductSchema
from hub.web import request_uow

bp = Blueprint("products", __name__, url_prefix="/v1", description="The catalog, with this tenant's prices")

_ARGS = ProductArgs(unknown=EXCLUDE)
_LIST = ProductListSchema()
_ONE = ProductSchema()


def _json(body: bytes) -> Response:
    return Response(body, mimetype="application/json")


def _args() -> dict:
    try:
        return check_loaded(_ARGS.load(request.args.to_dict(flat=True)))
    except ValidationError as exc:
        raise ValidationFailed(errors=exc.normalized_messages()) from None


@bp.route("/products")
class Products(MethodView):
    @requires("products:read", count_in_view=True)
    @bp.doc(parameters=[{"in": "query", "schema": ProductArgs}])
    @bp.response(200, ProductListSchema)
    def get(self):
        """The catalog with this tenant's prices; filters ``category``, ``brand``, ``type``,
        ``q``, ``active``; cursor-paginated by product code."""
        ctx = current_ctx()

        def build(configs):
            # Parsed only when the answer is not cached: the cache key is the query string
            # as sent, and a query that fails validation is never cached.
            args = _args()
            items, next_cursor = service.list_products(
                ctx, request_uow(), category=args["category"], brand=args["brand"], type_=args["type"], q=args["q"],
                active=args["active"], cursor=args["cursor"], limit=args["limit"], configs=configs)
            return _LIST.dump({"items": items, "next_cursor": next_cursor})

        return _json(service.cached(ctx, request_uow, "list:" + request.query_string.decode("latin-1"), build,
                                    rate=take_rate_count()))


@bp.route("/products/<code>")
class ProductOne(MethodView):
    @requires("products:read", count_in_view=True)
    @bp.response(200, ProductSchema)
    def get(self, code: str):
        """One product with this tenant's price; 404 when no product has this code."""
        ctx = current_ctx()
        return _json(service.cached(
            ctx, request_uow, "one:" + code,
            lambda configs: _ONE.dump(service.get_for_tenant(ctx, request_uow(), code, configs=configs)),
            rate=take_rate_count()))
