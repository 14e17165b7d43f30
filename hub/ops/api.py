"""Operations endpoints: liveness, readiness and metrics."""
from __future__ import annotations

import time

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from sqlalchemy import text

from hub.availability import RETRY_AFTER
from hub.edge import Blueprint
from hub.errors import PROBLEM_JSON, problem
from hub.metrics import render_metrics
from hub.openapi import ProblemSchema
from hub.state import current_state

bp = Blueprint("ops", __name__, description="Health, readiness and metrics")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class CheckSchema(ma.Schema):
    ok = ma.fields.Boolean(required=True)
    state = ma.fields.String(required=True, metadata={"description": "`up` or `down`"})
    latency_ms = ma.fields.Float()
    detail = ma.fields.String()
    backend = ma.fields.String()


class ReadySchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ready"})
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(CheckSchema))


@bp.route("/healthz")
class Health(MethodView):
    @bp.response(200, HealthSchema)
    def get(self):
        """The process is alive (nothing else is checked)."""
        return {"status": "ok"}


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # readiness reports the failure instead of raising it
        return {"ok": False, "state": "down", "detail": f"{type(exc).__name__}: {exc}"[:300],
                "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    return {"ok": True, "state": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


@bp.route("/readyz")
class Ready(MethodView):
    @bp.response(200, ReadySchema)
    @bp.alt_response(503, schema=ProblemSchema, content_type=PROBLEM_JSON,
                     description="problem+json naming the database or Redis as unreachable (`down`), "
                                 "with `checks` and `Retry-After`")
    def get(self):
        """The database and Redis answer: `checks.database.state` and `checks.redis.state` are
        `up` or `down`; 503 names what is down."""
        state = current_state()

        def database():
            with state.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        checks = {"database": _timed(database), "redis": _timed(state.redis.ping)}
        checks["database"]["backend"] = state.config.database_kind
        checks["redis"]["backend"] = state.redis_origin
        ready = all(c["ok"] for c in checks.values())
        if not ready:
            down = [name for name, c in checks.items() if not c["ok"]]
            return problem(503, "Service unavailable", f"Not reachable: {', '.join(down)}", slug="not-ready",
                           headers={"Retry-After": str(RETRY_AFTER)}, down=down, checks=checks)
        return {"status": "ready", "checks": checks}


@bp.route("/metrics")
class Metrics(MethodView):
    @bp.response(200, description="Prometheus text format")
    def get(self):
        """Prometheus metrics of this process (or of all processes under gunicorn)."""
        payload, content_type = render_metrics()
        return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)
