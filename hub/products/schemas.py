"""Request and response schemas of the products API. The response schemas are the only
way product data leaves through HTTP: they name every field shown, so cost and offers
cannot leak by accident."""
from __future__ import annotations

from marshmallow import Schema, fields, validate


class ProductArgs(Schema):
    category = fields.String(load_default=None, validate=validate.Length(max=40))
    brand = fields.String(load_default=None, validate=validate.Length(max=64))
    type = fields.String(load_default=None, validate=validate.OneOf(["prepaid", "postpaid"]))
    q = fields.String(load_default=None, validate=validate.Length(min=1, max=100),
                      metadata={"description": "words in the code or name (case-insensitive)"})
    active = fields.Boolean(load_default=None, metadata={"description": "only (un)available products"})
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class ProductSchema(Schema):
    code = fields.String()
    name = fields.String()
    category = fields.String()
    brand = fields.String()
    type = fields.String(metadata={"description": "prepaid or postpaid"})
    nominal = fields.Integer(allow_none=True, metadata={"description": "face value in minor units, if any"})
    description = fields.String()
    price = fields.Integer(allow_none=True, metadata={"description": "this tenant's price in minor units"})
    currency = fields.String()
    active = fields.Boolean(metadata={"description": "can be bought now"})


class ProductListSchema(Schema):
    items = fields.List(fields.Nested(ProductSchema))
    next_cursor = fields.String(allow_none=True)
