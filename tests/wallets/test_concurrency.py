"""200 concurrent transfers of 10 from a wallet of 1,000, from separate OS processes over HTTP."""
from __future__ import annotations

from collections import Counter

from hub.wallets import accounts
from hub.wallets.testing import post_from_processes

PROCESSES = 4
TRANSFERS = 200


def test_two_hundred_concurrent_transfers_from_separate_processes_exactly_100_succeed(
        app, config, tenant_factory, run, verify):
    tenant = tenant_factory(scopes=["wallets:read", "wallets:write"],
                            rate_limit_per_minute=100_000)
    main = run(accounts.get_main_wallet, tenant.ctx)
    sub = run(accounts.create_wallet, tenant.ctx, "customer")
    run(accounts.topup, tenant.operator, main.id, 1000, "seed")

    codes = post_from_processes(config, tenant.headers, "/v1/transfers", [
        {"from_wallet_id": main.id, "to_wallet_id": sub.id, "amount": 10, "ref_id": f"tr-{i}"}
        for i in range(TRANSFERS)], processes=PROCESSES)
    assert codes == Counter({201: 100, 402: 100})
    assert run(accounts.get_wallet, tenant.ctx, main.id).available == 0
    assert run(accounts.get_wallet, tenant.ctx, sub.id).available == 1000
    report = verify()
    assert report["ok"], report["differences"]
    assert report["journals"] == 101
