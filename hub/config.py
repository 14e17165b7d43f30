"""Configuration from the environment (docs/api.md, "Environment").

Every setting has an embedded default so that a fresh clone runs with nothing else
installed; secrets that are not given are generated once into the instance folder
(mode 0600) and reused by every process of the hub.
"""
from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.transactions.settings import Settings as TransactionSettings
    from hub.wallets.limits import MoneySettings


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


def _settings(overrides: dict, key: str, cls: Any, env: Mapping[str, str]) -> Any:
    """``overrides[key]`` when given, else ``cls.from_env(env)``; a bad value is a ConfigError."""
    given = overrides.pop(key, None)
    if given is not None:
        return given
    try:
        return cls.from_env(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


#: an on/off setting's spellings
_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _read_or_create_secret(path: Path, make) -> str:
    """Return the secret stored at ``path``, creating it atomically when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        value = make()
        fh.write(value + "\n")
    return value


def _new_fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmM]?)[bB]?\s*$")


def _number(env: Mapping[str, str], name: str, default: int, *, size: bool = False, minimum: int = 1) -> int:
    """An integer setting (``size``: bytes, with an optional ``K``/``M`` suffix for KiB/MiB)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    match = _SIZE.match(raw) if size else re.match(r"^\s*(\d+)\s*$", raw)
    if not match:
        what = "a number of bytes (e.g. 65536, 64K, 1M)" if size else "a whole number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}")
    value = int(match.group(1)) * ({"k": 1024, "m": 1024 * 1024}.get(match.group(2).lower(), 1) if size else 1)
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one request may cost (docs/security.md, "Hostile input"): body sizes per kind of
    route, the rows of a bulk file, the token endpoint's rate limits, and which proxies in
    front of the hub are trusted to name the client's address."""

    body_json: int = 1024 * 1024          # ROP_MAX_BODY_JSON: JSON and form bodies
    body_callback: int = 64 * 1024        # ROP_MAX_BODY_CALLBACK: providers' callbacks
    body_bulk: int = 50 * 1024 * 1024     # ROP_MAX_BODY_BULK: a bulk upload
    bulk_max_rows: int = 1_000_000        # ROP_BULK_MAX_ROWS
    token_per_client: int = 20            # ROP_TOKEN_RATE_PER_CLIENT: token requests per minute per client id
    token_per_address: int = 60           # ROP_TOKEN_RATE_PER_ADDRESS: ... per client address
    trusted_proxies: str = ""             # ROP_TRUSTED_PROXIES: a count, or addresses/networks

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """:raise ConfigError: on a malformed value."""
        from hub.proxies import parse_trusted_proxies

        proxies = (env.get("ROP_TRUSTED_PROXIES") or "").strip()
        parse_trusted_proxies(proxies)  # raises ConfigError when malformed
        return cls(
            body_json=_number(env, "ROP_MAX_BODY_JSON", cls.body_json, size=True),
            body_callback=_number(env, "ROP_MAX_BODY_CALLBACK", cls.body_callback, size=True),
            body_bulk=_number(env, "ROP_MAX_BODY_BULK", cls.body_bulk, size=True),
            bulk_max_rows=_number(env, "ROP_BULK_MAX_ROWS", cls.bulk_max_rows),
            token_per_client=_number(env, "ROP_TOKEN_RATE_PER_CLIENT", cls.token_per_client),
            token_per_address=_number(env, "ROP_TOKEN_RATE_PER_ADDRESS", cls.token_per_address),
            trusted_proxies=proxies,
        )


#: the file in the instance folder where, on the embedded defaults, the web server records the
#: address it serves on (every process of the hub reads it for the hub's callback URL)
SERVED_URL_FILE = "served_url"


def check_public_url(raw: str) -> str:
    """``ROP_PUBLIC_URL`` without its trailing slash. :raise ConfigError: not an http(s) URL."""
    from urllib.parse import urlsplit

    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"ROP_PUBLIC_URL must be the hub's http(s) address as providers reach it "
                          f"(e.g. https://hub.example.com), got {raw!r}")
    return value


def served_url(host: str, port: int) -> str:
    """The URL of a server listening on ``host``:``port``, as a process on this machine reaches
    it: a wildcard address (0.0.0.0, ::) is reached on the loopback address."""
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _embedded_redis_url(instance: Path) -> str | None:
    try:
        return (instance / "redis" / "url").read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Config:
    """The hub's settings, resolved once per process by :meth:`from_env`."""

    instance_path: Path
    database_url: str
    redis_url: str | None  # None: the hub runs its own embedded Redis
    secret_key: str
    encryption_keys: tuple[str, ...]
    webhook_allow_private: bool = False
    log_level: str = "INFO"
    log_format: str = "auto"  # "json", "console", or "auto": console on a terminal, else JSON
    access_token_ttl: int = 900
    limits: Limits = field(default_factory=Limits)
    #: the transactions service's tunables (``ROP_TX_*``; hub.transactions.settings)
    transactions: TransactionSettings | None = None
    #: the limits of money operations and the four-eyes thresholds (``ROP_AMOUNT_LIMIT*``,
    #: ``ROP_FOUR_EYES_*``; hub.wallets.limits)
    money: MoneySettings | None = None
    testing: bool = False
    #: seconds a process keeps reference data without a version bump (``ROP_CACHE_TTL``;
    #: hub.cache): the bound on staleness when a bump is lost; 0 turns the cache off
    cache_ttl: float = 5.0
    extra: Mapping[str, object] = field(default_factory=dict)
    #: ``ROP_PUBLIC_URL``: the hub's address as providers reach it (None: not set)
    public_url: str | None = None
    #: the hub runs its own Redis server (``ROP_REDIS_URL`` unset, or set by ``rop`` to it)
    redis_embedded: bool = False
    #: ``ROP_DRIVER_SHORTCUTS``: the hot statements through the DBAPI cursor and psycopg's larger
    #: statement cache (hub.driver); off, SQLAlchemy's and psycopg's public paths only
    driver_shortcuts: bool = True

    @property
    def database_is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_defaults(self) -> bool:
        """The one-machine set-up (``make run``, ``rop up`` with nothing set): a SQLite file and
        the hub's own Redis server."""
        return self.database_is_sqlite and self.redis_embedded

    def own_url(self) -> str | None:
        """The hub's address as providers reach it, for their callbacks: ``ROP_PUBLIC_URL``; on
        the embedded defaults without it, the address the web server serves on (recorded in
        the instance folder by ``rop up`` and the web server at start; ``http://127.0.0.1:5000``
        before either ran). None: unknown (outside the embedded defaults ROP_PUBLIC_URL is
        required; :meth:`require_public_url`)."""
        if self.public_url:
            return self.public_url
        if not self.embedded_defaults:
            return None
        try:
            return (self.instance_path / SERVED_URL_FILE).read_text().strip() or "http://127.0.0.1:5000"
        except OSError:
            return "http://127.0.0.1:5000"

    def require_public_url(self) -> None:
        """:raise ConfigError: outside the embedded defaults without ``ROP_PUBLIC_URL`` (the
        web server and ``rop up`` refuse to start: providers could not call the hub back)."""
        if self.own_url() is None:
            raise ConfigError("ROP_PUBLIC_URL is required outside the embedded defaults (SQLite and the hub's own "
                              "Redis): set it to the hub's address as providers reach it, e.g. https://hub.example.com")

    def record_served_url(self, url: str) -> None:
        """On the embedded defaults without ``ROP_PUBLIC_URL``: remember ``url`` (where the web
        server serves) as the hub's own address, for every process of this instance folder."""
        if self.public_url or not self.embedded_defaults:
            return
        path = self.instance_path / SERVED_URL_FILE
        if path.exists() and path.read_text().strip() == url:
            return
        scratch = path.with_name(f".{SERVED_URL_FILE}.{os.getpid()}")
        scratch.write_text(url + "\n")
        os.replace(scratch, path)

    @property
    def database_kind(self) -> str:
        return "sqlite" if self.database_is_sqlite else self.database_url.split(":", 1)[0]

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> Config:
        """Build the configuration from ``environ`` (default: ``os.environ``).

        :param overrides: values that win over the environment (tests use them).
        :raise ConfigError: on a malformed value.
        """
        env = dict(os.environ if environ is None else environ)
        instance = Path(
            str(overrides.pop("instance_path", None) or env.get("ROP_INSTANCE_PATH") or "instance")
        ).resolve()
        instance.mkdir(parents=True, exist_ok=True)

        database_url = str(
            overrides.pop("database_url", None)
            or env.get("ROP_DATABASE_URL")
            or f"sqlite:///{instance / 'rop.sqlite3'}"
        )
        if database_url.startswith("postgres://"):
            database_url = "postgresql://" + database_url[len("postgres://"):]
        if database_url.startswith("postgresql://"):
            # psycopg 3 is the driver we install and test with.
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]

        redis_url = overrides.pop("redis_url", None) or env.get("ROP_REDIS_URL") or None
        if redis_url and not str(redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"ROP_REDIS_URL must start with redis://, rediss:// or unix://, got {redis_url!r}")
        # rop's processes hand the embedded server's URL on to their children in ROP_REDIS_URL
        redis_embedded = not redis_url or str(redis_url) == _embedded_redis_url(instance)
        raw_public = overrides.pop("public_url", None) or env.get("ROP_PUBLIC_URL") or ""
        public_url = check_public_url(str(raw_public)) if str(raw_public).strip() else None

        secret_key = str(
            overrides.pop("secret_key", None)
            or env.get("ROP_SECRET_KEY")
            or _read_or_create_secret(instance / "secret_key", lambda: secrets.token_urlsafe(48))
        )
        if len(secret_key) < 16:
            raise ConfigError("ROP_SECRET_KEY must be at least 16 characters")

        raw_keys = overrides.pop("encryption_keys", None) or env.get("ROP_ENCRYPTION_KEYS") or ""
        if isinstance(raw_keys, str):
            keys = tuple(k.strip() for k in raw_keys.split(",") if k.strip())
        else:
            keys = tuple(raw_keys)  # type: ignore[arg-type]
        if not keys:
            keys = (_read_or_create_secret(instance / "encryption_key", _new_fernet_key),)
        for key in keys:
            try:
                if len(base64.urlsafe_b64decode(key.encode())) != 32:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    "ROP_ENCRYPTION_KEYS must be comma-separated url-safe base64 keys of 32 bytes"
                ) from None

        try:
            ttl = int(overrides.pop("access_token_ttl", None) or env.get("ROP_ACCESS_TOKEN_TTL") or 900)
        except ValueError:
            raise ConfigError("ROP_ACCESS_TOKEN_TTL must be a number of seconds") from None

        raw_cache_ttl = overrides.pop("cache_ttl", None)
        raw_cache_ttl = env.get("ROP_CACHE_TTL", "5") if raw_cache_ttl is None else raw_cache_ttl
        try:
            cache_ttl = float(raw_cache_ttl)  # type: ignore[arg-type]
        except ValueError:
            raise ConfigError("ROP_CACHE_TTL must be a number of seconds") from None
        if not 0 <= cache_ttl <= 3600:
            raise ConfigError("ROP_CACHE_TTL must be between 0 and 3600 seconds")

        from hub.transactions.settings import Settings as TransactionSettings

        transactions = _settings(overrides, "transactions", TransactionSettings, env)

        from hub.wallets.limits import MoneySettings

        money = _settings(overrides, "money", MoneySettings, env)
        log_format = str(overrides.pop("log_format", None) or env.get("ROP_LOG_FORMAT") or "auto").lower()
        if log_format not in ("auto", "json", "console"):
            raise ConfigError(f"ROP_LOG_FORMAT must be auto, json or console, got {log_format!r}")

        driver_shortcuts = overrides.pop("driver_shortcuts", None)
        if driver_shortcuts is None:
            raw_switch = (env.get("ROP_DRIVER_SHORTCUTS") or "1").strip().lower()
            if raw_switch not in _SWITCH:
                raise ConfigError(f"ROP_DRIVER_SHORTCUTS must be 1 or 0 (on or off), got {raw_switch!r}")
            driver_shortcuts = _SWITCH[raw_switch]

        return cls(
            instance_path=instance,
            database_url=database_url,
            redis_url=str(redis_url) if redis_url else None,
            secret_key=secret_key,
            encryption_keys=keys,
            webhook_allow_private=bool(
                overrides.pop("webhook_allow_private", None)
                or _truthy(env.get("ROP_WEBHOOK_ALLOW_PRIVATE"))
            ),
            log_level=str(overrides.pop("log_level", None) or env.get("ROP_LOG_LEVEL") or "INFO").upper(),
            log_format=log_format,
            access_token_ttl=ttl,
            limits=overrides.pop("limits", None) or Limits.from_env(env),  # type: ignore[arg-type]
            transactions=transactions,
            money=money,  # type: ignore[arg-type]
            testing=bool(overrides.pop("testing", False)),
            public_url=public_url,
            redis_embedded=redis_embedded,
            cache_ttl=cache_ttl,
            driver_shortcuts=bool(driver_shortcuts),
            extra=dict(overrides),
        )
