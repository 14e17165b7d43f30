"""200 concurrent transfers of 10 from a wallet of 1,000, from separate OS processes over HTTP."""
from __future__ import annotations

import multiprocessing
from collections import Counter

from hub.wallets import service
from hub.wallets.testing import http_transfer_worker

PROCESSES = 4
TRANSFERS = 200


def test_two_hundred_concurrent_transfers_from_separate_processes_exactly_100_succeed(
        app, config, tenant_factory, run, verify):
    tenant = tenant_factory(scopes=["wallets:read", "wallets:write", "wallets:topup"],
                            rate_limit_per_minute=100_000)
    main = run(service.get_main_wallet, tenant.ctx)
    sub = run(service.create_wallet, tenant.ctx, "customer")
    run(service.topup, tenant.ctx, main.id, 1000, "seed")

    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(PROCESSES), mp.Queue()
    refs = [f"tr-{i}" for i in range(TRANSFERS)]
    procs = [mp.Process(target=http_transfer_worker, args=(
        config.database_url, config.redis_url, str(config.instance_path), tenant.headers,
        main.id, sub.id, 10, refs[i::PROCESSES], barrier, results)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    codes: Counter[int] = Counter()
    for _ in procs:
        codes.update(results.get(timeout=240))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    assert codes == Counter({201: 100, 402: 100})
    assert run(service.get_wallet, tenant.ctx, main.id).available == 0
    assert run(service.get_wallet, tenant.ctx, sub.id).available == 1000
    report = verify()
    assert report["ok"], report["differences"]
    assert report["journals"] == 101
