"""Domain errors and their one mapping to RFC 9457 problem+json.

Services raise these; the edge (``register_error_handlers``) renders them. No view and no
service calls ``abort()``; nothing catches ``Exception`` to hide a failure. An unreachable
database or Redis (``hub.availability``) is a 503 with ``Retry-After`` for every route,
rendered here once.
"""
from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, g, json, request
from werkzeug.exceptions import HTTPException

from hub.availability import DATABASE_ERRORS, REDIS_ERRORS, RETRY_AFTER, unavailable_dependency
from hub.metrics import DEPENDENCY_UNAVAILABLE

PROBLEM_BASE = "https://rop.ralali.dev/problems/"
PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger("hub.errors")
_DEPENDENCY_NAMES = {"database": "The database", "redis": "Redis"}


#: One title per status, whoever answers (a service's error, the edge, webargs, Werkzeug).
TITLES: dict[int, str] = {
    400: "Bad request", 401: "Authentication required", 402: "Insufficient funds", 403: "Not allowed",
    404: "Not found", 405: "Method not allowed", 406: "Not acceptable", 409: "Conflict",
    413: "The body is too large", 415: "Unsupported media type", 422: "The request is not valid",
    429: "Too many requests", 500: "Internal server error", 503: "Service unavailable",
}


class HubError(Exception):
    """Base of the domain errors: each has an HTTP status, a slug and a title."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, errors: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(HubError):
    status, slug, title = 400, "bad-request", "Bad request"


class ValidationFailed(HubError):
    status, slug, title = 422, "validation-failed", "The request is not valid"

    def __init__(self, detail: str | None = None, *, errors: dict[str, Any] | None = None, **kwargs: Any):
        # Without a detail of its own, the detail names the fields, as every other 422 does.
        super().__init__(detail or (invalid_fields_detail(errors) if errors else None), errors=errors, **kwargs)


class Unauthorized(HubError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(HubError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(HubError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(HubError):
    status, slug, title = 409, "conflict", "Conflict"


class EditConflict(Conflict):
    """An edit made from a stale page: the row changed since it was read (its version moved on)."""

    slug, title = "edit-conflict", "Changed since you opened it"


class InsufficientFunds(HubError):
    status, slug, title = 402, "insufficient-funds", "Insufficient funds"


class PayloadTooLarge(HubError):
    status, slug, title = 413, "payload-too-large", "The body is too large"


class UnsupportedMediaType(HubError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class RateLimited(HubError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(HubError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class OAuthError(HubError):
    """An error of the OAuth token endpoint, answered as RFC 6749 §5.2 says:
    ``{"error": code, "error_description": text}``."""

    def __init__(self, status: int, error: str, description: str, *, headers: dict[str, str] | None = None):
        super().__init__(description, headers=headers)
        self.status = status
        self.error = error


#: the RFC 6749 error code of each status an OAuth endpoint answers (others: ``invalid_request``)
OAUTH_ERROR_CODES = {401: "invalid_client", 429: "slow_down", 500: "server_error", 503: "temporarily_unavailable"}


def oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 6749 §5.2 error response (never cached)."""
    response = Response(json.dumps({"error": error, "error_description": description}), status=status,
                        mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def oauth_endpoint(view):
    """Mark a view as an OAuth endpoint: every error it gives, the edge's and the hub's
    included, is an RFC 6749 error body (a field the edge refuses is ``400 invalid_request``)."""
    view._rop_oauth = True
    return view


def _oauth_request() -> bool:
    if not _has_request():
        return False
    from hub.edge import view_attribute

    return bool(view_attribute("_rop_oauth", False))


def _as_oauth(status: int, detail: str, headers: dict[str, str] | None) -> Response:
    if status == 422:
        status = 400
    return oauth_error(status, OAUTH_ERROR_CODES.get(status, "server_error" if status >= 500 else "invalid_request"),
                       detail, headers)


def problem(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
            errors: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _slug_for(status)),
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if errors:
        body["errors"] = errors
    request_id = getattr(g, "request_id", None) if _has_request() else None
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _has_request() -> bool:
    from flask import has_request_context

    return has_request_context()


def _slug_for(status: int) -> str:
    return {
        400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
        405: "method-not-allowed", 406: "not-acceptable", 409: "conflict", 413: "payload-too-large",
        415: "unsupported-media-type", 422: "validation-failed", 429: "rate-limited",
        500: "internal-error", 503: "service-unavailable",
    }.get(status, f"http-{status}")


def _normalise_errors(messages: Any) -> dict[str, Any] | None:
    """webargs nests messages by location (``{"json": {"field": [...]}}``): flatten one level."""
    if not isinstance(messages, dict):
        return None
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if location in {"json", "form", "query", "querystring", "files", "headers", "view_args"} and isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat or None


def invalid_fields_detail(errors: dict[str, Any] | None) -> str:
    """The ``detail`` of a 422 from a schema: which fields, and what is wrong with the first."""
    if not errors:
        return "One or more fields are not valid."
    names = sorted(errors)
    first = errors[names[0]]
    while isinstance(first, (list, dict)) and first:
        first = first[0] if isinstance(first, list) else next(iter(first.values()))
    if set(names) == {"_schema"}:
        return f"The body is not valid: {first}" if first else "The body is not valid."
    detail = f"{names[0]}: {first}"
    if len(names) > 1:
        detail += f" (also not valid: {', '.join(names[1:6])}{' …' if len(names) > 6 else ''}; see errors)"
    if _has_request() and request.method in ("POST", "PUT", "PATCH") and not request.get_data(cache=True).strip():
        detail = f"the body is empty: this route takes a JSON object, sent with Content-Type: application/json ({detail})"
    return detail


def register_error_handlers(app: Flask) -> None:
    """Render every error, 404/405/500 included, as problem+json."""

    @app.errorhandler(HubError)
    def _hub_error(exc: HubError):
        if isinstance(exc, OAuthError):
            return oauth_error(exc.status, exc.error, exc.detail, exc.headers)
        if _oauth_request():
            return _as_oauth(exc.status, exc.detail, exc.headers)
        return problem(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors,
                       headers=exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        errors = _normalise_errors(data.get("messages")) if isinstance(data, dict) else None
        status = exc.code or 500
        detail = exc.description if status != 422 else invalid_fields_detail(errors)
        headers = {}
        valid_methods = getattr(exc, "valid_methods", None)
        if status == 405 and valid_methods:
            headers["Allow"] = ", ".join(valid_methods)
        if _oauth_request():
            return _as_oauth(status, exc.description or exc.name, headers)
        return problem(status, TITLES.get(status, exc.name), detail, errors=errors, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error", path=request.path)
        if _oauth_request():
            return _as_oauth(500, "The hub failed to answer; the error has been logged.", None)
        return problem(500, "Internal server error",
                       "The hub failed to answer; the error has been logged with this request id.")

    def _dependency_error(exc: Exception):
        dependency = unavailable_dependency(exc)
        if dependency is None:
            return _unexpected(exc)
        DEPENDENCY_UNAVAILABLE.labels(dependency).inc()
        log.warning("dependency unavailable", dependency=dependency, path=request.path,
                    error=f"{type(exc).__name__}: {exc}"[:300])
        detail = f"{_DEPENDENCY_NAMES[dependency]} is unreachable just now; try again in {RETRY_AFTER} seconds."
        headers = {"Retry-After": str(RETRY_AFTER)}
        if _oauth_request():
            return _as_oauth(503, detail, headers)
        return problem(503, "Service unavailable", detail, slug="dependency-unavailable", headers=headers,
                       dependency=dependency)

    for kind in (*REDIS_ERRORS, *DATABASE_ERRORS):
        app.register_error_handler(kind, _dependency_error)
