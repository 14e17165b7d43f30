"""Events of the wallets service (published through the bus outbox)."""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.bus import Event


class WalletMovementSchema(Schema):
    wallet_id = fields.String(required=True)
    journal_id = fields.String(required=True)
    kind = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    available = fields.Integer(required=True)
    held = fields.Integer(required=True)
    hold_id = fields.String(allow_none=True)


class WalletCredited(Event):
    type = "wallet.credited"
    schema = WalletMovementSchema


class WalletDebited(Event):
    type = "wallet.debited"
    schema = WalletMovementSchema


class HoldSchema(Schema):
    hold_id = fields.String(required=True)
    wallet_id = fields.String(required=True)
    amount = fields.Integer(required=True)
    captured = fields.Integer(required=True)
    currency = fields.String(required=True)
    status = fields.String(required=True)
    reference = fields.String(allow_none=True)


class HoldPlaced(Event):
    type = "wallet.hold_placed"
    schema = HoldSchema


class HoldCaptured(Event):
    type = "wallet.hold_captured"
    schema = HoldSchema


class HoldVoided(Event):
    type = "wallet.hold_voided"
    schema = HoldSchema


class LedgerMismatchSchema(Schema):
    differences = fields.List(fields.Dict(), required=True)


class LedgerMismatch(Event):
    """The daily verify found a difference (platform-level: no tenant)."""

    type = "wallet.ledger_mismatch"
    schema = LedgerMismatchSchema
