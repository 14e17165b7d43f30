"""``rop providers check CONFIG``: a live check of a stored configuration against its provider
(the Digiflazz simulator over real HTTP, and the sandbox)."""
from __future__ import annotations

import json
import socket

import pytest
from rop_digiflazz.simulator import DigiflazzSimulator

from hub.cli import main
from hub.db import unit_of_work
from hub.providers import service


@pytest.fixture
def cli_env(monkeypatch, config):
    for key, value in {"ROP_DATABASE_URL": config.database_url, "ROP_REDIS_URL": config.redis_url,
                       "ROP_INSTANCE_PATH": str(config.instance_path), "ROP_WEBHOOK_ALLOW_PRIVATE": "1",
                       "ROP_PUBLIC_URL": "https://hub.example.com",
                       "ROP_ENCRYPTION_KEYS": ",".join(config.encryption_keys)}.items():
        monkeypatch.setenv(key, value)


def _add(app, provider_code: str, settings: dict, credentials: dict, enabled: bool = True) -> str:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = service.add_config(uow, provider_code, provider_code, settings=settings, credentials=credentials,
                                 enabled=enabled)
        uow.commit()
        return row.id


def _check(capsys, config_id: str) -> tuple[int, dict[str, tuple[str, str]]]:
    code = main(["providers", "check", config_id, "--json"])
    out = capsys.readouterr()
    lines = {line["check"]: (line["status"], line["detail"]) for line in json.loads(out.out)}
    return code, lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_healthy_configuration_passes_every_check(app, cli_env, capsys):
    with DigiflazzSimulator(username="u", api_key="k") as sim:
        config_id = _add(app, "digiflazz", {"base_url": sim.url}, {"username": "u", "api_key": "k"})
        code, lines = _check(capsys, config_id)
    assert code == 0
    assert lines["reachable"][0] == lines["credentials accepted"][0] == "ok"
    assert lines["balance"] == ("ok", "5,000,000")
    assert lines["catalog readable"] == ("ok", "4 products, 3 available")
    assert lines["callback URL"][1].startswith("http") and config_id in lines["callback URL"][1]


def test_wrong_credentials_are_told_apart_from_an_unreachable_provider(app, cli_env, capsys):
    with DigiflazzSimulator(username="u", api_key="k") as sim:
        wrong = _add(app, "digiflazz", {"base_url": sim.url}, {"username": "u", "api_key": "not-the-key"})
        code, lines = _check(capsys, wrong)
        assert code == 1
        assert lines["reachable"][0] == "ok"
        assert lines["credentials accepted"][0] == "failed" and "code 41" in lines["credentials accepted"][1]
    gone = _add(app, "digiflazz", {"base_url": f"http://127.0.0.1:{_free_port()}"}, {"username": "u", "api_key": "k"},
                enabled=False)
    code, lines = _check(capsys, gone)
    assert code == 1
    assert lines["switched on"][0] == "skipped"  # checked before switching it on
    assert lines["reachable"][0] == "failed" and "ConnectError" in lines["reachable"][1]
    assert lines["credentials accepted"][0] == lines["catalog readable"][0] == "skipped"


def test_the_text_output_and_the_error_line(app, cli_env, capsys):
    with DigiflazzSimulator(username="u", api_key="k") as sim:
        wrong = _add(app, "digiflazz", {"base_url": sim.url}, {"username": "u", "api_key": "nope"})
        assert main(["providers", "check", wrong]) == 1
    out = capsys.readouterr()
    assert "failed   credentials accepted" in out.out
    assert out.err.strip() == f"rop: error: {wrong}: credentials accepted failed"
    assert main(["providers", "check", "pcf_nope"]) == 1
    assert "pcf_nope" in capsys.readouterr().err


def test_the_sandbox_checks_without_a_network(app, cli_env, capsys):
    config_id = _add(app, "sandbox", {}, {"callback_secret": "s"})
    code, lines = _check(capsys, config_id)
    assert code == 0 and lines["balance"] == ("ok", "100,000,000")
