"""The transactions service's tunables come from ROP_TX_* variables, validated when a process
starts (one line naming the variable), and the hub acts on them."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from rop_sandbox.plugin import purchase_count

from hub.config import Config, ConfigError
from hub.transactions import lifecycle, sweep
from hub.transactions.settings import Settings

from .conftest import buy, kill_a_provider_worker_when, only_a_slow_sandbox, transaction

EVERY = {
    "ROP_TX_CHECK_SCHEDULE": "15, 1m, 2m, 90s",
    "ROP_TX_REVIEW_AFTER": "2h",
    "ROP_TX_REDRIVE_AFTER": "30",
    "ROP_TX_SENT_TIMEOUT": "75s",
    "ROP_TX_PROVIDER_LIMIT": "16",
    "ROP_TX_PROVIDER_LIMITS": "pcf_a=4, pcf_b=100",
    "ROP_TX_SLOT_TIMEOUT": "10",
    "ROP_TX_INQUIRY_TTL": "30m",
    "ROP_TX_MAX_WAIT": "20",
}


def test_every_setting_is_read_from_the_environment(tmp_path):
    settings = Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path), **EVERY}).transactions
    assert settings == Settings(check_schedule=(15.0, 60.0, 120.0, 90.0), review_after=7200.0, redrive_after=30.0,
                                sent_timeout=75.0, provider_limit=16, provider_limits={"pcf_a": 4, "pcf_b": 100},
                                slot_timeout=10.0, inquiry_ttl=1800.0, max_wait=20.0)
    assert Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path)}).transactions == Settings()


@pytest.mark.parametrize("name, value, says", [
    ("ROP_TX_SENT_TIMEOUT", "abc", "duration"),
    ("ROP_TX_SENT_TIMEOUT", "10", "in flight"),          # would overtake a provider call still running
    ("ROP_TX_SENT_TIMEOUT", "69", "in flight"),
    ("ROP_TX_SENT_TIMEOUT", "-5", "duration"),
    ("ROP_TX_REVIEW_AFTER", "90", "longer than ROP_TX_SENT_TIMEOUT"),
    ("ROP_TX_REVIEW_AFTER", "100d", "duration"),
    ("ROP_TX_REVIEW_AFTER", "2000h", "90 days"),
    ("ROP_TX_CHECK_SCHEDULE", "20,30", "once a minute"),  # the repeating delay asks too often
    ("ROP_TX_CHECK_SCHEDULE", "1,60", "between 5"),
    ("ROP_TX_CHECK_SCHEDULE", ",", "1 to 50"),
    ("ROP_TX_PROVIDER_LIMIT", "0", "between 1"),
    ("ROP_TX_PROVIDER_LIMIT", "2.5", "whole number"),
    ("ROP_TX_PROVIDER_LIMITS", "pcf_a:4", "pairs"),
    ("ROP_TX_PROVIDER_LIMITS", "pcf_a=lots", "whole number"),
    ("ROP_TX_SLOT_TIMEOUT", "1h", "worker thread"),
    ("ROP_TX_INQUIRY_TTL", "2d", "duration"),
    ("ROP_TX_INQUIRY_TTL", "25h", "same day"),
    ("ROP_TX_MAX_WAIT", "nan", "duration"),
    ("ROP_TX_MAX_WAIT", "1h", "web thread"),
    ("ROP_TX_SENT_TIMOUT", "60", "not a setting"),       # a typo is not ignored
])
def test_a_bad_value_is_one_line_naming_the_variable(tmp_path, name, value, says):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path), name: value})
    message = str(refused.value)
    assert name in message and says in message and "\n" not in message


def _start(args, tmp_path, **env):
    environ = {**os.environ, "ROP_INSTANCE_PATH": str(tmp_path / "instance"), "ROP_LOG_LEVEL": "WARNING", **env}
    return subprocess.run(args, env=environ, capture_output=True, text=True, timeout=120, check=False)


def test_a_bad_value_stops_the_processes_at_start_with_one_line(tmp_path):
    bad = {"ROP_TX_SENT_TIMEOUT": "2 minutes"}
    expected = "rop: error: ROP_TX_SENT_TIMEOUT must be a duration in seconds (e.g. 120, 90s, 2m, 1h), got '2 minutes'"
    for args in ([sys.executable, "-m", "hub.cli", "web"], [sys.executable, "-m", "hub.cli", "worker", "--burst"],
                 [sys.executable, "-m", "hub.cli", "up"]):
        started = _start(args, tmp_path, ROP_REDIS_URL="redis://127.0.0.1:9/0", **bad)
        assert started.returncode == 1 and started.stderr.strip() == expected, (args, started.stderr)
    # gunicorn run directly, as the Procfile's web process does
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    started = _start([gunicorn, "--bind", "127.0.0.1:0", "--config", "python:hub.gunicorn_conf",
                      "hub.app:create_app()"], tmp_path, ROP_REDIS_URL="redis://127.0.0.1:9/0", **bad)
    assert started.returncode == 1 and started.stderr.strip().splitlines()[-1] == expected


@pytest.fixture
def config(database_url, redis_url, instance_path, monkeypatch):
    """The suite's configuration with an unanswered attempt checked after 80 s (not 120 s), set
    as an operator does: in the environment of every process (the provider worker below too)."""
    monkeypatch.setenv("ROP_TX_SENT_TIMEOUT", "80")
    return Config.from_env({"ROP_TX_SENT_TIMEOUT": "80"}, instance_path=instance_path, database_url=database_url,
                           redis_url=redis_url, webhook_allow_private=True, testing=True, log_format="console",
                           log_level="WARNING")


def test_an_unanswered_attempt_gets_its_status_check_after_the_configured_sent_timeout(app, client, config, funded,
                                                                                        sandbox):
    with app.app_context():
        assert lifecycle.settings().sent_timeout == 80.0
    only_a_slow_sandbox(app, sandbox)
    created = buy(client, funded.tenant, "081200001234").json
    reference = f"{created['id']}-1"
    redis = app.extensions["rop"].redis
    # The provider worker (another process, configured by its environment) dies mid-call.
    kill_a_provider_worker_when(app, config, lambda: purchase_count(redis, reference) > 0)
    attempt = transaction(app, funded.tenant.id, created["id"])["attempts"][0]
    assert attempt["state"] == "sent"
    sent_at = attempt["sent_at"] if isinstance(attempt["sent_at"], dt.datetime) \
        else dt.datetime.fromisoformat(attempt["sent_at"])
    with app.app_context():
        assert sweep.sweep(now=sent_at + dt.timedelta(seconds=79))["checks"] == 0
        assert sweep.sweep(now=sent_at + dt.timedelta(seconds=81))["checks"] == 1
