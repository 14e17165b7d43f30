"""The quickstart (``make run``: ``rop db upgrade``, ``rop demo``, ``rop up``) as a newcomer meets it."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from hub.db import unit_of_work
from hub.tenancy.service import list_audit

ROP = [sys.executable, "-m", "hub.cli"]


@pytest.fixture
def rop(run_rop):
    """``rop demo`` and the like in this process (tests/conftest.py run_rop); its lines as a dict."""

    def run(*args):
        done = run_rop(*args)
        assert done.returncode == 0, done.stderr
        return dict(line.strip().split(None, 1) for line in done.stdout.splitlines()[1:])

    return run


def _token(client, lines) -> object:
    return client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": lines["client_id"],
                                             "client_secret": lines["client_secret"]})


def test_demo_keeps_its_secret_across_runs(rop, client, instance_path):
    first = rop("demo")
    assert _token(client, first).status_code == 200
    second = rop("demo")  # the next `make run`
    assert second["client_secret"] == first["client_secret"]
    assert _token(client, first).status_code == 200  # the secret a newcomer copied still works
    kept = instance_path / "demo-client-secret"
    assert kept.read_text().strip() == first["client_secret"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert str(kept) in second["secret_file"]
    kept.unlink()  # without its clear copy the demo cannot print it: a new one, the old refused
    third = rop("demo")
    assert third["client_secret"] != first["client_secret"]
    assert _token(client, first).status_code == 401 and _token(client, third).status_code == 200


def test_demo_wallet_is_funded_once_with_an_audited_top_up(rop, client, app):
    first = rop("demo")
    assert "10000000 IDR available" in first["wallet"]
    rop("demo")
    token = _token(client, first).json["access_token"]
    wallets = client.get("/v1/wallets", headers={"Authorization": f"Bearer {token}"}).json["items"]
    main = next(w for w in wallets if w["is_main"])
    assert main["available"] == 10_000_000 and main["currency"] == "IDR"  # not twice
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        topups = [entry.after for entry in list_audit(uow, action_prefix="wallet.topped_up")]
    assert len(topups) == 1 and "opening balance" in topups[0]["reason"]
    # the next step of the README, a purchase, is paid for
    bought = client.post("/v1/transactions", json={"ref_id": "qs-1", "product_code": "TEL10",
                                                    "customer_no": "081234567890"},
                         headers={"Authorization": f"Bearer {token}"})
    assert bought.status_code in (200, 202), bought.json


def test_on_a_terminal_the_logs_are_readable_lines_elsewhere_json(tmp_path):
    import json
    import pty

    script = ("from hub.logging import configure_logging\nimport structlog\n"
              "configure_logging('INFO', 'auto')\nstructlog.get_logger('hub.test').info('hello there', n=1)\n")
    env = {k: v for k, v in os.environ.items() if k != "ROP_LOG_FORMAT"}
    piped = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(piped.stderr.strip())["event"] == "hello there"
    leader, follower = pty.openpty()
    try:
        on_tty = subprocess.run([sys.executable, "-c", script], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=follower, timeout=60, check=False)
        assert on_tty.returncode == 0
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the writer is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    line = b"".join(chunks).decode().strip()
    assert "hello there" in line and "n=1" in line and not line.startswith("{")


def test_routine_periodic_jobs_log_at_debug(app, instance_path):
    import logging

    from hub.scheduler import Scheduler
    from hub.worker import make_worker

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records: list[logging.LogRecord] = []

        def emit(self, record):
            self.records.append(record)

    collect, root = Collect(), logging.getLogger()
    before = root.level
    root.addHandler(collect)
    root.setLevel(logging.INFO)
    try:
        assert "transactions.sweep" in Scheduler(app).run_due()
        make_worker(app, ["default"]).work(burst=True, logging_level="INFO")
        from rq import Queue

        Queue("default", connection=app.extensions["rop"].redis).enqueue("hub.wallets.jobs.expire_holds_job")
        make_worker(app, ["default"]).work(burst=True, logging_level="INFO")
    finally:
        root.removeHandler(collect)
        root.setLevel(before)
    at_info = [str(r.msg) % r.args if r.args else str(r.msg) for r in collect.records if r.levelno >= logging.INFO]
    assert not [line for line in at_info if "periodic" in line], at_info
    # a job that is not a routine periodic one keeps RQ's INFO lines
    assert any("expire_holds_job" in line for line in at_info), at_info
