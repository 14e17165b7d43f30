"""Credentials encrypted at rest with MultiFernet over ``ROP_ENCRYPTION_KEYS`` (newest first).

Rotation without downtime: put the new key first in ``ROP_ENCRYPTION_KEYS`` (old keys stay
after it, so every row still decrypts), then run ``rop providers rotate-keys`` to
re-encrypt every row under the new key; the old key may then be removed.
"""
from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CredentialsError(Exception):
    pass


def multifernet(keys: tuple[str, ...] | list[str]) -> MultiFernet:
    if not keys:
        raise CredentialsError("no encryption keys configured (ROP_ENCRYPTION_KEYS)")
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def encrypt(keys, data: dict[str, Any]) -> str:
    return multifernet(keys).encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def decrypt(keys, token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(multifernet(keys).decrypt(token.encode()))
    except InvalidToken as exc:
        raise CredentialsError("credentials cannot be decrypted with the configured keys") from exc


def rotate(keys, token: str) -> str:
    return multifernet(keys).rotate(token.encode()).decode()


def mask(data: dict[str, Any]) -> dict[str, str]:
    """Credentials as they may be shown: the last 2 characters at most."""
    out = {}
    for key, value in (data or {}).items():
        text = str(value)
        out[key] = "****" + (text[-2:] if len(text) > 8 else "")
    return out
