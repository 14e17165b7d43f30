"""Events the providers service publishes."""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.bus import Event


class CallbackPayload(Schema):
    callback_id = fields.String(required=True)
    provider_code = fields.String(required=True)
    config_id = fields.String(required=True)
    ref_id = fields.String(allow_none=True)
    state = fields.String(required=True)
    provider_ref = fields.String(allow_none=True)
    serial_number = fields.String(allow_none=True)
    cost = fields.Integer(allow_none=True)
    message = fields.String(allow_none=True)
    #: verified with the configuration's own secret, by a provider whose callbacks prove
    #: enough: only then may the callback move money (absent: not proven)
    proven = fields.Boolean(load_default=False)


class ProviderCallbackReceived(Event):
    """A readable provider callback arrived (the transactions service subscribes); ``proven``
    says whether it may move money or only triggers a status check of its reference."""

    type = "provider.callback_received"
    schema = CallbackPayload
