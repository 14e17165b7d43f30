"""The transactions service's tunables and how an operator sets them: ``ROP_TX_*`` variables.

Read once per process with the rest of the configuration (``hub.config.Config``), so a bad
value stops the process at start with one line naming the variable — never a purchase
that fails later. docs/transactions.md ("Settings") says why each default is what it is.

Durations are seconds, or a number with ``s``, ``m`` or ``h`` (``90``, ``90s``, ``2m``, ``1h``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

ENV_PREFIX = "ROP_TX_"

#: The longest a live provider call lasts with the shared HTTP client's defaults
#: (``hub.providers.http.DEFAULT_TIMEOUT``: 5 s to connect, 30 s to read).
PROVIDER_CALL_SECONDS = 35.0
#: The shortest ``sent_timeout``: a batch records its attempts ``sent`` before the calls, and
#: a call may first wait for a call thread about as long as another call lasts.
MIN_SENT_TIMEOUT = 2 * PROVIDER_CALL_SECONDS
#: How often ``rop scheduler`` runs the sweep that acts on these times (``SWEEP_EVERY``).
SWEEP_SECONDS = 5.0


@dataclass
class Settings:
    """Tunables of the service (``Config.transactions``; tests may set
    ``app.extensions["rop"].extras["transactions.settings"]``)."""

    #: seconds between status checks of one pending/unknown attempt (the last repeats);
    #: spaced so that one reference is not asked more than about once a minute
    check_schedule: tuple[float, ...] = (20.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0)
    #: a transaction still pending at its provider this long after the first purchase → review
    review_after: float = 3600.0
    #: an accepted transaction not processed after this is driven again by the sweep
    redrive_after: float = 60.0
    #: an attempt sent this long ago without an answer (a killed worker) gets a status check
    sent_timeout: float = 120.0
    #: provider calls in flight per provider configuration (all processes together)
    provider_limit: int = 64
    #: per configuration id, overriding ``provider_limit``
    provider_limits: dict[str, int] = field(default_factory=dict)
    #: how long a call waits for a free slot of its configuration before the job is retried
    slot_timeout: float = 30.0
    #: how long a postpaid inquiry can be paid
    inquiry_ttl: float = 3600.0
    #: the longest ``Prefer: wait=N`` honoured
    max_wait: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The settings with every ``ROP_TX_*`` variable of ``environ`` applied.

        :raise ValueError: one line naming the variable, for a malformed or out-of-range
            value, or an unknown ``ROP_TX_`` name (a typo must not pass silently).
        """
        known = {ENV_PREFIX + f.name.upper(): f.name for f in fields(cls)}
        changes: dict[str, object] = {}
        for name in sorted(k for k in environ if k.startswith(ENV_PREFIX)):
            if name not in known:
                raise ValueError(f"{name} is not a setting; the ROP_TX_ variables are {', '.join(sorted(known))}")
            attr = known[name]
            changes[attr] = _PARSERS[attr](name, environ[name].strip())
        settings = replace(cls(), **changes)
        settings.check()
        return settings

    def check(self) -> None:
        """:raise ValueError: when the values contradict each other (one line)."""
        if self.review_after <= self.sent_timeout:
            raise ValueError(f"ROP_TX_REVIEW_AFTER ({self.review_after:g} s) must be longer than "
                             f"ROP_TX_SENT_TIMEOUT ({self.sent_timeout:g} s): a transaction whose worker died "
                             "would go to review before its first status check")


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smh]?)$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(name: str, raw: str, low: float, high: float, why: str) -> float:
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(f"{name} must be a duration in seconds (e.g. 120, 90s, 2m, 1h), got {raw!r}")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g} seconds ({why}), got {raw!r}")
    return value


def _count(name: str, raw: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d+", raw):
        raise ValueError(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {raw!r}")
    return value


def _schedule(name: str, raw: str) -> tuple[float, ...]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not 1 <= len(parts) <= 50:
        raise ValueError(f"{name} must be 1 to 50 comma-separated durations (e.g. 20,60,2m,5m), got {raw!r}")
    delays = tuple(_duration(name, p, SWEEP_SECONDS, 86400.0, "the sweep runs every 5 s; a day at most")
                   for p in parts)
    if delays[-1] < 60.0:
        raise ValueError(f"{name}: its last delay repeats until the deadline and must be at least 60 s "
                         f"(a provider is not asked about one reference more than about once a minute), got {raw!r}")
    return delays


def _limits(name: str, raw: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        config_id, sep, value = part.partition("=")
        if not sep or not config_id.strip():
            raise ValueError(f"{name} must be comma-separated <configuration id>=<calls> pairs "
                             f"(e.g. pcf_1a2b=8,pcf_3c4d=16), got {raw!r}")
        found[config_id.strip()] = _count(f"{name} ({config_id.strip()})", value.strip(), 1, 10_000)
    return found


_PARSERS = {
    "check_schedule": _schedule,
    "review_after": lambda n, r: _duration(n, r, 60.0, 30 * 86400.0,
                                           "a minute at least; 30 days at most, long before a provider "
                                           "forgets a reference (90 days at Digiflazz)"),
    "redrive_after": lambda n, r: _duration(n, r, SWEEP_SECONDS, 86400.0, "the sweep runs every 5 s"),
    "sent_timeout": lambda n, r: _duration(n, r, MIN_SENT_TIMEOUT, 86400.0,
                                           "a status check must not overtake a provider call still in "
                                           "flight: up to 35 s for the call after as long for a call thread"),
    "provider_limit": lambda n, r: _count(n, r, 1, 10_000),
    "provider_limits": _limits,
    "slot_timeout": lambda n, r: _duration(n, r, 0.0, 120.0, "a job waiting longer holds a worker thread"),
    "inquiry_ttl": lambda n, r: _duration(n, r, 60.0, 86400.0, "a bill is paid the same day as its inquiry"),
    "max_wait": lambda n, r: _duration(n, r, 0.0, 600.0, "each wait holds a web thread"),
}
