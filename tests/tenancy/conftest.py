from __future__ import annotations

import pytest

from hub.tenancy import service


@pytest.fixture
def argon2_calls(monkeypatch):
    """How many argon2 verifications ran."""
    calls: list[str] = []
    real = service._hasher

    class Spy:
        def verify(self, hash_, secret):
            calls.append(hash_)
            return real.verify(hash_, secret)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(service, "_hasher", Spy())
    return calls
