"""The hub's own callback URL: on the embedded defaults it is where the hub serves (any port),
and only it is exempt from the private-address guard; elsewhere ROP_PUBLIC_URL is required.

Before, the callback URL was ``http://127.0.0.1:5000`` whatever the port, and loopback was
refused: with ``PORT=5077 make run`` no sandbox callback arrived, 8888/7777 settled only by
the status check and 3333 never became refunded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub.embedded_redis import free_port
from hub.providers.http import ProviderHttp, RequestNotSent, allow_own_callbacks, is_own_callback
from hub.providers.testing import LiveServer

ROP = [sys.executable, "-m", "hub.cli"]


def _clean_env(instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROP_")}
    return {**env, "ROP_INSTANCE_PATH": str(instance), "ROP_LOG_LEVEL": "WARNING", **extra}


def _rop(env, *args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([*ROP, *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert not check or done.returncode == 0, (args, done.stderr[-2000:])
    return done


def _settled(base: str, headers: dict, transaction_id: str, final: str, deadline: float) -> dict:
    while True:
        body = httpx.get(f"{base}/v1/transactions/{transaction_id}", headers=headers, timeout=10).json()
        if body["status"] == final:
            return body
        assert time.monotonic() < deadline, f"{transaction_id} is still {body['status']}: {body['timeline']}"
        time.sleep(0.3)


@pytest.mark.slow
def test_rop_up_on_any_port_gets_the_sandbox_callbacks(tmp_path):
    """``rop up --port <free port>`` on the embedded defaults, ROP_WEBHOOK_ALLOW_PRIVATE off:
    8888 and 7777 settle by callback, 3333 becomes refunded. Status checks are put an hour
    away (ROP_TX_CHECK_SCHEDULE), so only a callback can settle them."""
    env = _clean_env(tmp_path / "instance", ROP_TX_CHECK_SCHEDULE="3600", ROP_TX_REVIEW_AFTER="2h")
    _rop(env, "db", "upgrade")
    demo = _rop(env, "demo").stdout
    creds = dict(line.split(None, 1) for line in demo.splitlines()[1:] if line.strip())
    _rop(env, "wallets", "topup", "--tenant", "demo", "1000000", "--reason", "test funds")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:  # the children hold their own descriptors of it
        proc = subprocess.Popen([*ROP, "up", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.25)
        token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(creds["client_id"], creds["client_secret"]), timeout=10).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        # Another process (this CLI) names the same callback URL: the address the hub serves on.
        configs = json.loads(_rop(env, "providers", "list", "--json").stdout)["configurations"]
        sandbox = next(c["id"] for c in configs if c["provider_code"] == "sandbox")
        shown = _rop(env, "providers", "show", sandbox).stdout
        assert f"callback URL: {base}/callbacks/sandbox/{sandbox}" in shown

        bought = {}
        for number in ("081200008888", "081200007777", "081200003333"):
            answer = httpx.post(f"{base}/v1/transactions", headers=headers, timeout=10,
                                json={"ref_id": f"own-{number}", "product_code": "TEL10", "customer_no": number})
            assert answer.status_code in (200, 201, 202), answer.text
            bought[number] = answer.json()["id"]
        deadline = time.monotonic() + 120
        for number, final in (("081200008888", "succeeded"), ("081200007777", "failed"),
                              ("081200003333", "refunded")):
            body = _settled(base, headers, bought[number], final, deadline)
            vias = [e["detail"].get("via") for e in body["timeline"] if e["kind"] == "outcome"]
            assert "callback" in vias and "status_check" not in vias, (number, body["timeline"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("server", ["up", "gunicorn"])
def test_outside_the_embedded_defaults_the_hub_refuses_to_start_without_rop_public_url(tmp_path, redis_url,
                                                                                          server):
    """Another Redis than the hub's own (or another database than SQLite): providers could not
    call back a hub whose address nobody gave. One line, exit 1, nothing started."""
    env = _clean_env(tmp_path / "instance", ROP_REDIS_URL=redis_url)
    if server == "up":
        args = [*ROP, "up", "--port", str(free_port())]
    else:
        args = [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{free_port()}",
                "--config", "python:hub.gunicorn_conf", "hub.app:create_app()"]
    started = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 1
    last = started.stderr.strip().splitlines()[-1]
    assert last.startswith("rop: error: ROP_PUBLIC_URL is required outside the embedded defaults"), started.stderr
    if server == "up":
        assert started.stderr.strip().count("\n") == 0


def test_a_malformed_rop_public_url_is_one_line(tmp_path):
    done = subprocess.run([*ROP, "providers", "list"], capture_output=True, text=True, timeout=120, check=False,
                          env=_clean_env(tmp_path / "instance", ROP_PUBLIC_URL="hub.example.com"))
    assert done.returncode == 1
    assert done.stderr.strip() == ("rop: error: ROP_PUBLIC_URL must be the hub's http(s) address as providers reach "
                                   "it (e.g. https://hub.example.com), got 'hub.example.com'")


def test_only_the_hubs_own_callback_urls_pass_the_private_address_guard(app):
    """The hub's callback URL on 127.0.0.1 is allowed without ROP_WEBHOOK_ALLOW_PRIVATE; any
    other path there, or another port, is still refused."""
    with LiveServer(app) as hub:
        allow_own_callbacks(hub.url)
        http = ProviderHttp()
        own = f"{hub.url}/callbacks/sandbox/pcf_nope"
        assert is_own_callback(own)
        # reached the hub (which refuses a callback of an unknown configuration): not refused by the guard
        assert http.post(own, content=b"{}", allow_private=False).status_code == 403
        for elsewhere in (f"{hub.url}/v1/products", f"{hub.url}/callbacks/../admin/",
                          f"http://127.0.0.1:{free_port()}/callbacks/sandbox/pcf_nope"):
            assert not is_own_callback(elsewhere)
            with pytest.raises(RequestNotSent, match="not a public address"):
                http.post(elsewhere, content=b"{}", allow_private=False)
