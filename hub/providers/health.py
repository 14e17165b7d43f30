"""Provider health: rolling windows of outcomes and latency, and circuit breakers that stop
calls to a failing configuration and probe it back (in Redis, so every process shares them).

Each configuration has two kinds of breaker:

- its **shared** breaker, fed only by transport failures
  (:attr:`hub.providers.contract.ProviderResult.transport_failure`: the connection refused,
  DNS, timeouts, resets, HTTP 5xx). Open, the configuration leaves every tenant's routing;
- one breaker **per (tenant, configuration)**, fed by everything that counts against
  health — every ``unknown`` or unsent outcome of that tenant's calls, transport failures
  included. Open, that tenant's purchases stop going there; no other tenant's.

So purchases that fail for reasons of their own — a tenant buying numbers the provider
chokes on, 50 sandbox purchases ending 5555 — switch the configuration off for that tenant
only, while a provider that is down is switched off for everyone.

Window: the last ``WINDOW`` outcomes of a breaker's scope. A breaker opens when at least
``MIN_CALLS`` outcomes are in its window and its failure rate reaches ``FAILURE_RATE``; it
stays open ``OPEN_SECONDS``, then lets one probe call through (half-open): a good probe
closes it, a bad one re-opens it. A tenant's window expires after ``TENANT_WINDOW_TTL``
seconds without a call.
"""
from __future__ import annotations

import json
import time
from typing import Any

from hub.redis_scripts import hot_script

WINDOW = 50
MIN_CALLS = 10
FAILURE_RATE = 0.5
OPEN_SECONDS = 30.0
TENANT_WINDOW_TTL = 86_400

#: Outcomes that count against a tenant's health on a configuration.
BAD = {"unknown", "not_sent"}


def _scope(config_id: str, tenant_id: str | None = None) -> str:
    return config_id if tenant_id is None else f"{config_id}:tenant:{tenant_id}"


def _key(scope: str, part: str) -> str:
    return f"rop:providers:health:{scope}:{part}"


def record(redis, config_id: str, outcome: str, latency_ms: float, *, tenant_id: str | None = None,
           transport_failure: bool = False) -> None:
    """Record one call's outcome (a state value, or ``not_sent``) and latency: in the
    configuration's shared window (bad only for a transport failure) and, for a tenant's
    call, in that tenant's window on it (bad for any unknown or unsent outcome). Both windows
    and their breakers move in one script: one round trip per call."""
    scopes = [(_scope(config_id), transport_failure)]
    if tenant_id is not None:
        scopes.append((_scope(config_id, tenant_id), transport_failure or outcome in BAD))
    keys: list[str] = []
    args: list[Any] = [repr(time.time()), WINDOW, MIN_CALLS, FAILURE_RATE, OPEN_SECONDS]
    for scope, bad in scopes:
        keys += [_key(scope, "calls"), _key(scope, "open_until"), _key(scope, "probe")]
        args += [json.dumps([outcome, round(latency_ms, 1), bad]), int(bad)]
    args.append(TENANT_WINDOW_TTL)
    hot_script(redis, _RECORD_LUA)(keys=keys, args=args)


#: :func:`record` for one scope or two (the shared window, then the tenant's): push the
#: outcome, keep the last WINDOW, then the breaker: open — nothing; half-open — the probe's
#: outcome closes it (and clears the window) or opens it again; closed — it opens when the
#: window holds MIN_CALLS and its share of bad outcomes reaches FAILURE_RATE. (An entry is
#: ``[outcome, ms, bad]``; one written before the bad flag is bad for an unknown or unsent
#: outcome.)
_RECORD_LUA = """
local now, window, min_calls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate, open_for = tonumber(ARGV[4]), tonumber(ARGV[5])
local function record(calls, open_until, probe, entry, bad, ttl)
  redis.call('LPUSH', calls, entry)
  redis.call('LTRIM', calls, 0, window - 1)
  if ttl > 0 then redis.call('EXPIRE', calls, ttl) end
  local raw = redis.call('GET', open_until)
  if raw then
    if tonumber(raw) > now then return end
    if bad then
      redis.call('SET', open_until, string.format('%.6f', now + open_for))
    else
      redis.call('DEL', open_until, calls)
    end
    redis.call('DEL', probe)
    return
  end
  local items = redis.call('LRANGE', calls, 0, -1)
  if #items < min_calls then return end
  local bad_calls = 0
  for _, item in ipairs(items) do
    local d = cjson.decode(item)
    local is_bad
    if #d > 2 then is_bad = d[3] else is_bad = (d[1] == 'unknown' or d[1] == 'not_sent') end
    if is_bad then bad_calls = bad_calls + 1 end
  end
  if bad_calls / #items >= rate then
    redis.call('SET', open_until, string.format('%.6f', now + open_for))
  end
end
record(KEYS[1], KEYS[2], KEYS[3], ARGV[6], ARGV[7] == '1', 0)
if #KEYS > 3 then record(KEYS[4], KEYS[5], KEYS[6], ARGV[8], ARGV[9] == '1', tonumber(ARGV[#ARGV])) end
return 1
"""
def _state(redis, scope: str) -> str:
    return _state_of(redis.get(_key(scope, "open_until")), time.time())


def _state_of(open_until, now: float) -> str:
    """A breaker's state from its ``open_until`` value (None: closed) at ``now``."""
    if open_until is None:
        return "closed"
    return "open" if float(open_until) > now else "half_open"


def breaker_state(redis, config_id: str, tenant_id: str | None = None) -> str:
    """``closed``, ``open`` or ``half_open``: the configuration's shared breaker, or with
    ``tenant_id`` that tenant's breaker on it."""
    return _state(redis, _scope(config_id, tenant_id))


def is_open(redis, config_id: str, tenant_id: str | None = None) -> bool:
    """Whether calls to the configuration are stopped now: its shared breaker is open, or
    (for ``tenant_id``) that tenant's breaker on it is."""
    return open_many(redis, [config_id], tenant_id)[config_id]


def open_until_keys(config_id: str, tenant_id: str | None = None) -> list[str]:
    """The keys of the ``open_until`` of the breakers guarding a tenant's calls to a
    configuration: the shared breaker's, then (with ``tenant_id``) the tenant's."""
    keys = [_key(_scope(config_id), "open_until")]
    if tenant_id is not None:
        keys.append(_key(_scope(config_id, tenant_id), "open_until"))
    return keys


def open_many(redis, config_ids: list[str], tenant_id: str | None = None) -> dict[str, bool]:
    """:func:`is_open` for many configurations in one round trip."""
    if not config_ids:
        return {}
    keys = [k for c in config_ids for k in open_until_keys(c, tenant_id)]
    return open_from_values(config_ids, tenant_id, redis.mget(keys))


def open_from_values(config_ids: list[str], tenant_id: str | None, values: list) -> dict[str, bool]:
    """:func:`open_many` from the values of its keys (``open_until_keys`` of each
    configuration, in order), read by the caller in a round trip of its own."""
    now = time.time()
    width = 1 if tenant_id is None else 2
    return {c: any(raw is not None and float(raw) > now for raw in values[i * width:(i + 1) * width])
            for i, c in enumerate(config_ids)}


def closed_for(redis, pairs) -> set[tuple[str, str | None]]:
    """Of ``(config_id, tenant_id)`` pairs, those whose breakers (the shared one and the
    tenant's) are both closed now, read in one round trip: their calls need no
    :func:`allow_call` (a half-open breaker's probe is only taken by it)."""
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return set()
    values = redis.mget([key for config_id, tenant_id in pairs for key in open_until_keys(config_id, tenant_id)])
    closed, at = set(), 0
    for config_id, tenant_id in pairs:
        width = 1 if tenant_id is None else 2
        if all(raw is None for raw in values[at:at + width]):
            closed.add((config_id, tenant_id))
        at += width
    return closed


def allow_call(redis, config_id: str, tenant_id: str | None = None) -> bool:
    """May a (new) call go to this configuration now, for ``tenant_id``? Not while either
    breaker is open; a half-open one lets one probe through."""
    scopes = [_scope(config_id)] + ([_scope(config_id, tenant_id)] if tenant_id is not None else [])
    values = redis.mget([_key(scope, "open_until") for scope in scopes])
    if all(raw is None for raw in values):
        return True  # both closed: one round trip
    now = time.time()
    states = [_state_of(raw, now) for raw in values]
    if "open" in states:
        return False
    taken = []
    for scope, state in zip(scopes, states):
        if state != "half_open":
            continue
        if not redis.set(_key(scope, "probe"), "1", nx=True, ex=int(OPEN_SECONDS)):
            if taken:
                redis.delete(*taken)  # the other breaker's probe is not used after all
            return False
        taken.append(_key(scope, "probe"))
    return True


def _stats(redis, scope: str) -> dict[str, Any]:
    items = [json.loads(x) for x in redis.lrange(_key(scope, "calls"), 0, -1)]
    calls = len(items)
    # [outcome, ms, bad]; a window written before the bad flag: bad = an unknown or unsent outcome
    bad = sum(1 for item in items if (item[2] if len(item) > 2 else item[0] in BAD))
    latencies = sorted(item[1] for item in items)
    return {
        "calls": calls,
        "success_rate": (calls - bad) / calls if calls else None,
        "failure_rate": bad / calls if calls else 0.0,
        "latency_ms_p50": latencies[calls // 2] if calls else None,
        "latency_ms_p95": latencies[min(calls - 1, int(calls * 0.95))] if calls else None,
        #: the window's latencies, oldest first (the admin's sparkline)
        "latencies_ms": [item[1] for item in reversed(items)],
        "breaker": _state(redis, scope),
    }


def health(redis, config_id: str, tenant_id: str | None = None) -> dict[str, Any]:
    """The window's figures (calls, success and failure rate, latency p50/p95) and the
    breaker's state: the configuration's shared ones, or with ``tenant_id`` that tenant's."""
    return _stats(redis, _scope(config_id, tenant_id))
