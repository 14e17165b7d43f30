"""Helpers for the wallets' multi-process tests and bench: workers run in separate OS processes.

Each worker builds its own app (its own engine and pool) from plain arguments, so it can
be started with the ``spawn`` method.
"""
from __future__ import annotations

from typing import Any


def _make_app(database_url: str, redis_url: str | None, instance_path: str):
    from hub.app import create_app
    from hub.config import Config

    config = Config.from_env({}, instance_path=instance_path, database_url=database_url, redis_url=redis_url,
                             testing=True, log_format="console", log_level="ERROR")
    return create_app(config)


def http_transfer_worker(database_url: str, redis_url: str | None, instance_path: str, headers: dict[str, str],
                         from_wallet_id: str, to_wallet_id: str, amount: int, refs: list[str],
                         barrier: Any, results: Any) -> None:
    """POST /v1/transfers once per ref through the Flask test client; put the status codes on ``results``."""
    app = _make_app(database_url, redis_url, instance_path)
    client = app.test_client()
    codes: list[int] = []
    try:
        barrier.wait(timeout=120)
        for ref in refs:
            response = client.post("/v1/transfers", headers=headers, json={
                "from_wallet_id": from_wallet_id, "to_wallet_id": to_wallet_id, "amount": amount, "ref_id": ref})
            codes.append(response.status_code)
    finally:
        results.put(codes)
        app.extensions["rop"].db.dispose()
