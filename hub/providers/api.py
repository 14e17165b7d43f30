"""``POST /callbacks/{provider_code}/{config_id}``: providers' callbacks (no bearer token;
authenticity is proven by the plugin's ``parse_callback``)."""
from __future__ import annotations

from http import HTTPStatus

import marshmallow as ma
from flask import request

from hub.edge import Blueprint, body_limit
from hub.errors import Forbidden
from hub.openapi import OWN_ERRORS
from hub.web import request_uow

bp = Blueprint("provider_callbacks", __name__, description="Providers' callbacks (the provider's plugin checks "
                                                            "their authenticity; no bearer token)")


class CallbackAcceptedSchema(ma.Schema):
    accepted = ma.fields.Boolean(required=True)
    callback_id = ma.fields.String(required=True)
    state = ma.fields.String(required=True, metadata={"description": "the outcome the callback reports"})
    verified = ma.fields.Boolean(required=True, metadata={"description": "false: the claim moves no money by "
                                                          "itself; the hub checks the reference's status"})


_ANY_BODY = {"required": False, "content": {
    "application/json": {"schema": {}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
    "text/plain": {"schema": {"type": "string"}},
}}


@bp.route("/callbacks/<provider_code>/<config_id>", methods=["POST"])
@body_limit("callback")
@bp.doc(security=[], requestBody=_ANY_BODY, **{OWN_ERRORS: "own"})
@bp.response(200, CallbackAcceptedSchema)
@bp.alt_response(403, response=HTTPStatus(403).name, description="Rejected by the plugin, or no such configuration "
                                                         "(recorded with the reason)")
@bp.alt_response(404, response=HTTPStatus(404).name, description="The path holds a NUL character or a lone surrogate")
@bp.alt_response(413, response=HTTPStatus(413).name, description="The body is larger than ROP_MAX_BODY_CALLBACK")
def callback(provider_code: str, config_id: str):
    """A provider's callback: recorded whole (the body as bytes, at most ``ROP_MAX_BODY_CALLBACK``),
    then judged by the configuration's plugin."""
    from hub.providers.service import receive_callback

    uow = request_uow()
    record, result = receive_callback(uow, provider_code, config_id, dict(request.headers),
                                      request.get_data(cache=False), request.remote_addr)
    uow.commit()  # the rejection is recorded too
    if result is None:
        raise Forbidden(f"callback rejected: {record.reason}", callback_id=record.id)
    # 200 either way (a provider retries anything else); "verified": false says the claim
    # moves no money by itself: the hub checks the reference's status with the provider.
    return {"accepted": True, "callback_id": record.id, "state": result.state.value,
            "verified": record.result.get("proof") == "signed"}
