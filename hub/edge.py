"""The edge: what every request's input is held to before a view or a service sees it
(docs/security.md, "Hostile input").

One mechanism, installed once by :func:`init_edge`:

- **Body size per kind of route**, before a byte is read: JSON and form bodies
  ``ROP_MAX_BODY_JSON`` (1 MiB), providers' callbacks ``ROP_MAX_BODY_CALLBACK`` (64 KiB), a
  bulk upload ``ROP_MAX_BODY_BULK`` (50 MiB); a view says which kind it is with
  :func:`body_limit`. Past it: 413 (a declared ``Content-Length`` is refused at once; a
  chunked body when the limit is crossed).
- **Text** that no database column can hold — a NUL character (PostgreSQL refuses it) or a
  lone UTF-16 surrogate such as ``"\\ud800"`` (not Unicode; no driver can encode it) — is
  refused wherever a request carries it: an id in the path (404: no such thing exists), a
  query parameter, a form field or file name, a JSON string or key (422 naming the field).
  :class:`HubRequest` checks ``args``, ``form``, ``files`` and the JSON body when a view or
  the arguments parser first reads them, so authentication still comes first.
- **JSON** is parsed by :func:`loads`: nesting at most :data:`MAX_DEPTH` levels, no
  ``NaN``/``Infinity``, integers within a signed 64-bit integer (what the database stores).
- **Typed arguments** (``Blueprint.arguments``, through :class:`HubParser`): after a schema
  loads them, integers must fit a signed 64-bit integer and date-times must convert to UTC
  within Python's and the database's years (1–9999); a field stored in a 32-bit column
  says so with :data:`INT32` in its schema.

A provider's callback body is not text to the hub: it is stored whole, as bytes, and its
plugin judges it.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import Flask, Request, current_app, request
from marshmallow import missing, validate
from webargs.flaskparser import FlaskParser, is_json_request

from hub.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

#: the deepest a JSON body may nest (objects and arrays)
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
#: for a schema field stored in a 32-bit integer column (e.g. a bulk row number)
INT32 = validate.Range(min=-(2**31), max=INT32_MAX, error="must be between {min} and {max}")
#: problems reported per request at most (a hostile body may have a million)
MAX_PROBLEMS = 20

_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_KINDS = ("json", "callback", "bulk")


# -- text ------------------------------------------------------------------------------------
def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii() and _SURROGATE.search(value):
        return "contains a lone surrogate (not Unicode text)"
    return None


def printable(text: str) -> str:
    """``text`` with NUL and lone surrogates written as ``\\u0000`` escapes (for messages and logs)."""
    if text_problem(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text.replace("\x00", "\\u0000"))


def _name(path: tuple[Any, ...]) -> str:
    return ".".join(printable(str(p)) for p in path) if path else "body"


def json_problems(value: Any, max_depth: int = MAX_DEPTH) -> dict[str, list[str]]:
    """What is wrong with a decoded JSON value, by field path (``items.0.ref_id``); {} when nothing.

    Walks iteratively: a hostile depth cannot exhaust the stack.
    """
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 1)]
    while stack and len(problems) < MAX_PROBLEMS:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                problems[_name(path)] = [f"nested deeper than {max_depth} levels"]
                continue
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                if isinstance(key, str) and (why := text_problem(key)):
                    problems[_name((*path, key))] = [f"the name {why}"]
                    continue
                stack.append((child, (*path, key), depth + 1))
        elif isinstance(node, str):
            if why := text_problem(node):
                problems[_name(path)] = [why]
        elif isinstance(node, int) and not isinstance(node, bool) and not INT64_MIN <= node <= INT64_MAX:
            problems[_name(path)] = [f"must be between {INT64_MIN} and {INT64_MAX}"]
    return problems


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large a number")
    return number


def loads(data: bytes | str) -> Any:
    """Decode a JSON body within the edge's bounds.

    :raise BadRequest: when it is not JSON (400).
    :raise ValidationFailed: when it nests too deep or holds text or numbers the hub cannot store (422).
    """
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValidationFailed(f"the JSON body is nested deeper than {MAX_DEPTH} levels",
                               errors={"body": [f"nested deeper than {MAX_DEPTH} levels"]}) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits, NaN
        raise BadRequest(f"the body is not valid JSON: {str(exc).splitlines()[0]}",
                         errors={"body": ["not valid JSON"]}) from None
    problems = json_problems(value)
    if problems:
        raise ValidationFailed("One or more fields are not valid.", errors=problems)
    return value


def loaded_problems(value: Any) -> dict[str, list[str]]:
    """What is wrong with arguments a schema has loaded: integers past 64 bits, date-times
    that do not convert to UTC within years 1–9999, text the database cannot hold."""
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack and len(problems) < MAX_PROBLEMS:
        node, path = stack.pop()
        if isinstance(node, dict):
            stack.extend((child, (*path, key)) for key, child in node.items())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend((child, (*path, n)) for n, child in enumerate(node))
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                problems[_name(path)] = [f"must be between {INT64_MIN} and {INT64_MAX}"]
        elif isinstance(node, dt.datetime):
            try:
                in_utc = node.astimezone(dt.UTC) if node.tzinfo else node
            except (OverflowError, ValueError):
                in_utc = None
            if in_utc is None or not (dt.datetime.min.year < in_utc.year < dt.datetime.max.year):
                problems[_name(path)] = ["must be a date-time between years 2 and 9998 (in UTC)"]
        elif isinstance(node, str) and (why := text_problem(node)):
            problems[_name(path)] = [why]
    return problems


def check_loaded(value: Any) -> Any:
    """``value`` when :func:`loaded_problems` finds nothing. :raise ValidationFailed:"""
    problems = loaded_problems(value)
    if problems:
        raise ValidationFailed("One or more fields are not valid.", errors=problems)
    return value


def _multidict_problems(values: Any, *, files: bool = False) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for key, value in values.items(multi=True):
        if why := text_problem(key):
            problems[printable(key)] = [f"the name {why}"]
        text = getattr(value, "filename", None) if files else value
        if isinstance(text, str) and (why := text_problem(text)):
            problems[printable(key)] = [f"the file name {why}" if files else why]
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


# -- the request -----------------------------------------------------------------------------
class HubRequest(Request):
    """Flask's request, whose ``args``, ``form``, ``files`` and JSON body are checked by the
    edge on first use: text the database cannot hold is a 422 naming the field."""

    def _checked(self, name: str, value: Any, files: bool = False) -> Any:
        done = self.__dict__.setdefault("_rop_checked", set())
        if name not in done:
            problems = _multidict_problems(value, files=files)
            if problems:
                raise ValidationFailed("One or more fields are not valid.", errors=problems)
            done.add(name)
        return value

    @property
    def args(self):  # type: ignore[override]
        return self._checked("args", Request.args.__get__(self, type(self)))

    @property
    def form(self):  # type: ignore[override]
        return self._checked("form", Request.form.__get__(self, type(self)))

    @property
    def files(self):  # type: ignore[override]
        return self._checked("files", Request.files.__get__(self, type(self)), files=True)

    def json_body(self) -> Any:
        """The JSON body through :func:`loads` (cached); ``missing`` when there is none."""
        if "_rop_json" not in self.__dict__:
            data = self.get_data(cache=True)
            self.__dict__["_rop_json"] = loads(data) if data.strip() else missing
        return self.__dict__["_rop_json"]

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not (force or self.is_json):
            return None if silent else self.on_json_loading_failed(None)
        try:
            value = self.json_body()
        except (BadRequest, ValidationFailed):
            if silent:
                return None
            raise
        return None if value is missing else value


class HubParser(FlaskParser):
    """webargs' Flask parser reading JSON through the edge, and checking what schemas load."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True).strip():
                # A body this route would read as JSON, sent as something else (curl -d sends a
                # form): say so, instead of a "Missing data" for every field.
                sent = req.mimetype or "no Content-Type"
                raise UnsupportedMediaType(
                    f"the body was sent with {sent}: this route takes a JSON object, sent with "
                    "Content-Type: application/json", errors={"Content-Type": ["expected application/json"]})
            return missing
        if isinstance(req, HubRequest):
            return req.json_body()
        data = req.get_data(cache=True)
        return loads(data) if data.strip() else missing

    def parse(self, argmap: Any, req: Request | None = None, **kwargs: Any) -> Any:
        return check_loaded(super().parse(argmap, req, **kwargs))


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the edge's arguments parser: every service's API uses it."""

    ARGUMENTS_PARSER = HubParser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Callable:
        """flask-smorest's ``arguments``, given one instance of a schema class for all the
        route's requests: webargs makes a new instance of a class on every request (a tenth
        of a millisecond each); marshmallow's schemas are reusable. The OpenAPI document is
        the same (an instance is named after its class)."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


# -- per-route body limits ---------------------------------------------------------------------
def body_limit(kind: str) -> Callable:
    """Mark a view as taking a body of ``kind``: ``json`` (the default), ``callback`` or ``bulk``."""
    if kind not in _BODY_KINDS:
        raise ValueError(f"unknown body kind {kind!r}")

    def mark(view: Callable) -> Callable:
        view._rop_body = kind  # type: ignore[attr-defined]
        return view

    return mark


def view_attribute(name: str, default: Any = None) -> Any:
    """An attribute set on the current request's view function (or MethodView method)."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, request.method.lower(), None)
    return getattr(view, name, default)


def body_limit_for_request() -> int:
    from hub.state import current_state

    limits = current_state().config.limits
    kind = view_attribute("_rop_body", "json")
    return {"json": limits.body_json, "callback": limits.body_callback, "bulk": limits.body_bulk}[kind]


def init_edge(app: Flask) -> None:
    """Install the edge on ``app``: its request class, the proxies it trusts, and the hook that
    bounds the body and refuses ids that cannot exist."""
    from hub.proxies import TrustedProxies

    app.request_class = HubRequest
    trusted = app.extensions["rop"].config.limits.trusted_proxies
    app.wsgi_app = TrustedProxies(app.wsgi_app, trusted)  # type: ignore[method-assign]

    @app.before_request
    def _guard_the_edge():
        limit = body_limit_for_request()
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"the body is {request.content_length} bytes; this route takes at most {limit}",
                                  limit=limit)
        for name, value in (request.view_args or {}).items():
            if isinstance(value, str) and text_problem(value):
                raise NotFound(f"no {name} {printable(value)!r}: it {text_problem(value)}")
