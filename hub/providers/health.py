"""Provider health: a rolling success rate and latency per configuration, and a circuit
breaker that stops routing to a failing configuration and probes it back (in Redis, so every
process shares it).

Window: the last ``WINDOW`` outcomes. The breaker opens when at least ``MIN_CALLS`` outcomes
are in the window and the failure rate (unknown + transport failures) reaches
``FAILURE_RATE``; it stays open ``OPEN_SECONDS``, then lets one probe call through
(half-open): a good probe closes it, a bad one re-opens it.
"""
from __future__ import annotations

import json
import time
from typing import Any

WINDOW = 50
MIN_CALLS = 10
FAILURE_RATE = 0.5
OPEN_SECONDS = 30.0

#: Outcomes that count against a provider's health (its fault, not the customer's).
BAD = {"unknown", "not_sent"}


def _key(config_id: str, part: str) -> str:
    return f"rop:providers:health:{config_id}:{part}"


def record(redis, config_id: str, outcome: str, latency_ms: float) -> None:
    """Record one call's outcome (a state value, or ``not_sent``) and latency."""
    item = json.dumps([outcome, round(latency_ms, 1)])
    pipe = redis.pipeline()
    pipe.lpush(_key(config_id, "calls"), item)
    pipe.ltrim(_key(config_id, "calls"), 0, WINDOW - 1)
    pipe.execute()
    bad = outcome in BAD
    state = breaker_state(redis, config_id)
    if state == "half_open":
        if bad:
            redis.set(_key(config_id, "open_until"), time.time() + OPEN_SECONDS)
        else:
            redis.delete(_key(config_id, "open_until"), _key(config_id, "calls"))
        redis.delete(_key(config_id, "probe"))
        return
    stats = health(redis, config_id)
    if stats["calls"] >= MIN_CALLS and stats["failure_rate"] >= FAILURE_RATE and state == "closed":
        redis.set(_key(config_id, "open_until"), time.time() + OPEN_SECONDS)


def breaker_state(redis, config_id: str) -> str:
    raw = redis.get(_key(config_id, "open_until"))
    if raw is None:
        return "closed"
    return "open" if float(raw) > time.time() else "half_open"


def open_until_key(config_id: str) -> str:
    """The key of a configuration's ``open_until`` (see :func:`breaker_state`)."""
    return _key(config_id, "open_until")


def open_many(redis, config_ids: list[str]) -> dict[str, bool]:
    """:func:`breaker_state` ``== "open"`` for many configurations in one round trip."""
    if not config_ids:
        return {}
    now = time.time()
    values = redis.mget([_key(c, "open_until") for c in config_ids])
    return {c: raw is not None and float(raw) > now for c, raw in zip(config_ids, values)}


def allow_call(redis, config_id: str) -> bool:
    """May a call go to this configuration now? In half-open state only one probe passes."""
    state = breaker_state(redis, config_id)
    if state == "closed":
        return True
    if state == "open":
        return False
    return bool(redis.set(_key(config_id, "probe"), "1", nx=True, ex=int(OPEN_SECONDS)))


def health(redis, config_id: str) -> dict[str, Any]:
    items = [json.loads(x) for x in redis.lrange(_key(config_id, "calls"), 0, -1)]
    calls = len(items)
    bad = sum(1 for o, _ in items if o in BAD)
    latencies = sorted(ms for _, ms in items)
    return {
        "calls": calls,
        "success_rate": (sum(1 for o, _ in items if o not in BAD) / calls) if calls else None,
        "failure_rate": bad / calls if calls else 0.0,
        "latency_ms_p50": latencies[calls // 2] if calls else None,
        "latency_ms_p95": latencies[min(calls - 1, int(calls * 0.95))] if calls else None,
        "breaker": breaker_state(redis, config_id),
    }
