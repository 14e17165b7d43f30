"""The OpenAPI document describes every response the hub gives.

- Errors are RFC 9457 ``application/problem+json`` (:class:`ProblemSchema`), the one shape
  hub.errors renders; flask-smorest's own error schema is not used.
- :class:`ErrorResponses` adds to each operation the errors the edge and the
  authentication give it, from what the operation is: 401/403/429 when it needs a token,
  404 when its path names something, 413 for a POST/PUT/PATCH (any body is bounded), 400
  when it reads a body (not JSON), 422 when it takes a body or parameters, 409 for an authenticated write, 503 (a dependency is down) for all. A view
  declares the rest itself (``@bp.doc(responses={402: HTTPStatus(402).name})``, replays with
  ``alt_response``).
- An operation whose errors are not problem+json (the OAuth token endpoint, RFC 6749
  bodies) says so with ``@bp.doc(**{"x-rop-errors": "own"})`` and declares its own.
"""
from __future__ import annotations

import http
from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from hub.errors import PROBLEM_JSON

OWN_ERRORS = "x-rop-errors"
_BODY_METHODS = ("post", "put", "patch")


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = ma.fields.String(required=True, metadata={"description": "a URI naming the kind of problem"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    request_id = ma.fields.String(metadata={"description": "the request's id (X-Request-ID), for support"})
    errors = ma.fields.Dict(metadata={"description": "what is wrong with each field, by field name"})

    class Meta:
        unknown = ma.INCLUDE  # some problems carry more members (job_id, transaction_id, limit, ...)


class HubApi(Api):
    """flask-smorest's Api, whose error responses are problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            if status in (401, 503, 429):
                response["headers"] = _HEADERS[status]
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "An error (problem+json)", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "the Bearer challenge", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


class ErrorResponses(BasePlugin):
    """Adds the errors every operation of its kind can answer (see the module's doc)."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            own = operation.pop(OWN_ERRORS, None) == "own"
            codes = [503]
            if not own:
                if operation.get("security"):
                    codes += [401, 403, 429]
                    if method in _BODY_METHODS:
                        codes.append(409)
                if path and "{" in path:
                    codes.append(404)
                if method in _BODY_METHODS:
                    codes.append(413)
                if "requestBody" in operation:
                    codes.append(400)
                if "requestBody" in operation or operation.get("parameters"):
                    codes.append(422)
            for code in codes:
                if code not in responses and str(code) not in responses:
                    responses[code] = http.HTTPStatus(code).name
            responses.setdefault("default", "DEFAULT_ERROR")
