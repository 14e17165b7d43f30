"""Request and response schemas of the wallets API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate


class WalletSchema(Schema):
    id = fields.String()
    owner_ref = fields.String(allow_none=True)
    is_main = fields.Boolean()
    currency = fields.String()
    available = fields.Integer()
    held = fields.Integer()
    overdraft_limit = fields.Integer()
    created_at = fields.DateTime()


class WalletListSchema(Schema):
    items = fields.List(fields.Nested(WalletSchema))
    next_cursor = fields.String(allow_none=True)


class WalletCreateSchema(Schema):
    owner_ref = fields.String(required=True, validate=validate.Length(min=1, max=255))
    currency = fields.String(load_default="IDR", validate=validate.Regexp(r"^[A-Z]{3}$"))


class CursorArgs(Schema):
    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class EntrySchema(Schema):
    id = fields.Integer()
    journal_id = fields.String()
    kind = fields.String()
    ref = fields.String(allow_none=True)
    account = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    balance_after = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class EntryListSchema(Schema):
    items = fields.List(fields.Nested(EntrySchema))
    next_cursor = fields.String(allow_none=True)


class AmountField(fields.Integer):
    """A strict integer (no "10", no 10.5, no true)."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, validate=validate.Range(min=1, error="must be a positive integer"), **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class TopupSchema(Schema):
    amount = AmountField(required=True, metadata={"description": "what the platform received, in minor units"})
    ref_id = fields.String(required=True, validate=validate.Length(min=1, max=255),
                           metadata={"description": "the idempotency key (e.g. the bank transfer's reference)"})
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=500),
                           metadata={"description": "a note for the audit log (e.g. the bank and its statement line)"})


class TransferSchema(Schema):
    from_wallet_id = fields.String(required=True)
    to_wallet_id = fields.String(required=True)
    amount = AmountField(required=True)
    ref_id = fields.String(required=True, validate=validate.Length(min=1, max=255))


class JournalResultSchema(Schema):
    journal_id = fields.String()
    kind = fields.String()
    wallet_id = fields.String()
    from_wallet_id = fields.String()
    to_wallet_id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    ref_id = fields.String()
    replayed = fields.Boolean()
