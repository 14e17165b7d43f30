"""``POST /callbacks/{provider_code}/{config_id}``: providers' callbacks (no bearer token;
authenticity is proven by the plugin's ``parse_callback``)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from hub.errors import Forbidden
from hub.web import request_uow

bp = Blueprint("provider_callbacks", __name__)


@bp.post("/callbacks/<provider_code>/<config_id>")
def callback(provider_code: str, config_id: str):
    from hub.providers.service import receive_callback

    uow = request_uow()
    record, result = receive_callback(uow, provider_code, config_id, dict(request.headers),
                                      request.get_data(cache=False), request.remote_addr)
    uow.commit()  # the rejection is recorded too
    if result is None:
        raise Forbidden(f"callback rejected: {record.reason}", callback_id=record.id)
    # 200 either way (a provider retries anything else); "verified": false says the claim
    # moves no money by itself: the hub checks the reference's status with the provider.
    return jsonify({"accepted": True, "callback_id": record.id, "state": result.state.value,
                    "verified": record.result.get("proof") == "signed"})
