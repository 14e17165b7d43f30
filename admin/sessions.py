"""Server-side admin sessions: the cookie carries a signed session id, the session lives in Redis.

Logging out deletes the session from Redis, so a cookie copied before the logout opens
nothing afterwards; a session idle longer than ``ROP_ADMIN_IDLE_MINUTES`` or older than
``ROP_ADMIN_SESSION_SECONDS`` is refused by the guard (``rop_admin.security``) and removed.
Every login starts a new session id (no session fixation), and ``rop admin set-password``
ends every session of that user (:func:`end_user_sessions`).
"""
from __future__ import annotations

import secrets
from typing import Any

import structlog
from flask import Flask, request
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, Signer
from werkzeug.datastructures import CallbackDict

from hub.availability import REDIS_ERRORS

log = structlog.get_logger("rop_admin.sessions")

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_PREFIX = "rop:admin:session:"
#: Redis keeps an untouched session this much longer than the idle timeout (the guard, with the
#: app's clock, is what refuses it; the expiry only cleans up).
_SLACK_SECONDS = 60


def _key(sid: str) -> str:
    return _PREFIX + sid


def _user_key(user_id: str) -> str:
    return f"rop:admin:user-sessions:{user_id}"


class ServerSession(CallbackDict, SessionMixin):
    """A session whose data is kept server-side under ``sid`` (None until first saved)."""

    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def on_update(this: ServerSession) -> None:
            this.modified = True
            this.accessed = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.modified = False
        self.accessed = False
        #: Set by :func:`renew`: the next save stores the data under a new id (login).
        self.renew = False
        #: The Redis error that kept the session from being read (raised by the admin's guard,
        #: where the error handlers answer 503; a session that could not be read is not saved).
        self.unavailable: BaseException | None = None


def end(session: ServerSession) -> None:
    """Delete the session from the store now (logout), so that a Redis outage is the caller's
    503 rather than a session silently left alive; then empty it."""
    from hub.state import current_state

    if session.sid is not None:
        current_state().redis.delete(_key(session.sid))
        session.sid = None
    session.clear()


def renew(session: ServerSession) -> None:
    """Give the session a new id when it is next saved (and forget the old one): at login."""
    session.renew = True
    session.modified = True


class RedisSessionInterface(SessionInterface):
    """Flask sessions kept in the hub's Redis; the cookie is Secure except on plain local hosts."""

    serializer_salt = "rop-admin-session"

    def __init__(self, idle_seconds: int) -> None:
        self.idle_seconds = idle_seconds

    @staticmethod
    def _redis():
        from hub.state import current_state

        return current_state().redis

    def _signer(self, app: Flask) -> Signer:
        return Signer(app.secret_key, salt=self.serializer_salt)

    def get_cookie_secure(self, app: Flask) -> bool:
        forced = app.config.get("ROP_ADMIN_COOKIE_SECURE")
        if forced is not None:
            return bool(forced)
        try:
            host = request.host
        except RuntimeError:
            return True
        host = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
        return host not in _LOCAL_HOSTS

    def open_session(self, app: Flask, request) -> ServerSession:  # type: ignore[override]
        from flask.sessions import session_json_serializer

        if not request.environ.get("HTTP_COOKIE"):  # an API call: no cookies to parse at all
            return ServerSession()
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return ServerSession()
        try:
            sid = self._signer(app).unsign(cookie).decode()
        except BadSignature:
            return ServerSession()
        try:
            raw = self._redis().get(_key(sid))
        except REDIS_ERRORS as exc:
            anonymous = ServerSession()
            anonymous.unavailable = exc
            return anonymous
        if raw is None:  # logged out, expired, or never ours: an empty session
            return ServerSession()
        try:
            data = session_json_serializer.loads(raw.decode())
        except ValueError:
            return ServerSession()
        return ServerSession(data, sid=sid)

    def save_session(self, app: Flask, session: ServerSession, response) -> None:  # type: ignore[override]
        name, domain, path = self.get_cookie_name(app), self.get_cookie_domain(app), self.get_cookie_path(app)
        if session.accessed:
            response.vary.add("Cookie")
        if session.unavailable is not None:
            return
        try:
            self._store(app, session, response, name, domain, path)
        except REDIS_ERRORS as exc:  # the answer is made: the change of session is lost, said in the log
            log.warning("admin session not saved", error=f"{type(exc).__name__}: {exc}"[:300])

    def _store(self, app: Flask, session: ServerSession, response, name: str, domain, path: str) -> None:
        from flask.sessions import session_json_serializer

        redis = self._redis()
        if not session:
            if session.sid is not None:
                redis.delete(_key(session.sid))
            if session.modified or session.sid is not None:
                response.delete_cookie(name, domain=domain, path=path, secure=self.get_cookie_secure(app),
                                       samesite=self.get_cookie_samesite(app),
                                       httponly=self.get_cookie_httponly(app))
            return
        if not session.modified:
            return
        if session.renew and session.sid is not None:
            redis.delete(_key(session.sid))
            session.sid = None
        new = session.sid is None
        if new:
            session.sid = secrets.token_urlsafe(32)
        ttl = int(app.config.get("ROP_ADMIN_IDLE_SECONDS", self.idle_seconds)) + _SLACK_SECONDS
        redis.set(_key(session.sid), session_json_serializer.dumps(dict(session)), ex=ttl)
        user = session.get("admin")
        if user and (new or session.renew):
            pipe = redis.pipeline()
            pipe.sadd(_user_key(user["id"]), session.sid)
            pipe.expire(_user_key(user["id"]), int(app.config.get("ROP_ADMIN_SESSION_SECONDS", 8 * 3600)) + ttl)
            pipe.execute()
        session.renew = False
        if new:
            response.set_cookie(name, self._signer(app).sign(session.sid).decode(), domain=domain, path=path,
                                secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app),
                                httponly=self.get_cookie_httponly(app))


def end_user_sessions(redis, user_id: str) -> int:
    """End every session of admin user ``user_id`` (a password reset); return how many were open."""
    sids = [s.decode() if isinstance(s, bytes) else s for s in redis.smembers(_user_key(user_id))]
    pipe = redis.pipeline()
    for sid in sids:
        pipe.delete(_key(sid))
    pipe.delete(_user_key(user_id))
    removed = pipe.execute()
    return sum(removed[:-1]) if sids else 0
