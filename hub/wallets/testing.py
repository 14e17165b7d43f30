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


def http_post_worker(database_url: str, redis_url: str | None, instance_path: str, headers: dict[str, str],
                     path: str, bodies: list[dict[str, Any]], barrier: Any, results: Any) -> None:
    """POST each body to ``path`` through the Flask test client, all after ``barrier``; put the
    status codes on ``results``."""
    app = _make_app(database_url, redis_url, instance_path)
    client = app.test_client()
    codes: list[int] = []
    try:
        barrier.wait(timeout=120)
        for body in bodies:
            codes.append(client.post(path, headers=headers, json=body).status_code)
    finally:
        results.put(codes)
        app.extensions["rop"].db.dispose()


def post_from_processes(config: Any, headers: dict[str, str], path: str, bodies: list[dict[str, Any]],
                        processes: int = 4, timeout: float = 240.0):
    """POST ``bodies`` to ``path`` from ``processes`` separate OS processes (spawned, each with
    its own app on ``config``'s database and Redis, all starting together; body i goes to
    process ``i % processes``). :return: a Counter of the status codes."""
    import multiprocessing
    from collections import Counter

    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(processes), mp.Queue()
    procs = [mp.Process(target=http_post_worker, args=(
        config.database_url, config.redis_url, str(config.instance_path), headers, path,
        bodies[i::processes], barrier, results)) for i in range(processes)]
    for p in procs:
        p.start()
    codes: Counter[int] = Counter()
    for _ in procs:
        codes.update(results.get(timeout=timeout))
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise AssertionError(f"a posting process exited with {p.exitcode}")
    return codes
