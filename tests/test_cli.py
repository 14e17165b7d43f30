"""The ``rop`` command line: help everywhere, one-line errors, and ``rop up``'s lifecycle."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import psutil
import pytest

from hub.cli import main
from hub.cli.base import main_group
from hub.embedded_redis import free_port

ROP = [sys.executable, "-m", "hub.cli"]


def _all_command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_all_command_paths(command, (*prefix, name)))
    return paths


@pytest.mark.parametrize("path", [()] + _all_command_paths(main_group), ids=lambda p: " ".join(p) or "rop")
def test_every_command_has_help(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: rop")


@pytest.mark.parametrize("path", [()] + [p for p in _all_command_paths(main_group)
                                         if isinstance(main_group.commands[p[0]], click.Group) and len(p) == 1],
                         ids=lambda p: " ".join(p) or "rop")
def test_command_summaries_fit_an_80_column_terminal(path, capsys, monkeypatch):
    """``rop --help`` (and each group's) lists every command with a whole summary, not one cut
    with "..." (click's short_help)."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    listed = out.split("Commands:", 1)[1].splitlines()[1:]
    assert listed and all(line.strip() for line in listed)
    cut = [line.strip() for line in listed if line.rstrip().endswith("...")]
    assert cut == [], cut
    assert all(len(line) <= 80 for line in listed)


@pytest.mark.parametrize("argv", [["nope"], ["worker", "--bogus"], ["web", "--port", "http"],
                                  ["db", "upgrade", "extra-arg"], ["worker", "--queues", "nosuchqueue"],
                                  ["worker", "--threads", "8", "--db-connections", "0"]])
def test_bad_input_is_a_one_line_error(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("argv", [["wallets", "adjust", "-500", "--tenant", "t", "--wallet", "w", "--reason", "r"],
                                  ["pricing", "set", "markup_percent", "-500"]])
def test_a_negative_amount_is_an_argument_not_an_option(argv, capsys, tmp_path, monkeypatch):
    """`rop wallets adjust -500` debits (docs/api.md) and a negative markup is a discount: click
    read '-500' as the options -5, -0, -0 ("No such option '-5'")."""
    monkeypatch.setenv("ROP_INSTANCE_PATH", str(tmp_path))
    code = main([*argv, "--bogus-option-after"])
    err = capsys.readouterr().err
    assert code == 2 and "No such option" not in err and "-500" not in err, err
    assert "--bogus-option-after" in err and err.strip().count("\n") == 0, err


def test_rop_up_on_a_port_in_use_is_one_line_and_starts_nothing(tmp_path, capsys, monkeypatch):
    """It printed 'serving on …', restarted gunicorn for a minute (about 100 lines) while its
    workers and scheduler served the instance, then gave up."""
    import socket

    for name in ("ROP_DATABASE_URL", "ROP_REDIS_URL", "ROP_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROP_INSTANCE_PATH", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["up", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().count("\n") == 0, err
    assert err.startswith(f"rop: error: cannot serve on 127.0.0.1:{port}") and "serving on" not in err, err
    assert not (tmp_path / "redis").exists()  # no Redis server was started


def test_db_upgrade_and_check(tmp_path):
    env = {**os.environ, "ROP_INSTANCE_PATH": str(tmp_path), "ROP_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    env.pop("ROP_REDIS_URL", None)
    up = subprocess.run([*ROP, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    check = subprocess.run([*ROP, "db", "check"], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "agree" in check.stdout


def test_operational_error_is_one_line_and_exit_1(tmp_path):
    env = {**os.environ, "ROP_INSTANCE_PATH": str(tmp_path), "ROP_REDIS_URL": "http://wrong"}
    result = subprocess.run([*ROP, "scheduler"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "ROP_REDIS_URL" in result.stderr


@pytest.mark.slow
def test_rop_up_serves_on_its_own_redis_and_ctrl_c_leaves_nothing_behind(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROP_")}
    env["ROP_INSTANCE_PATH"] = str(tmp_path / "instance")
    subprocess.run([*ROP, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    log = open(tmp_path / "up.log", "w+")
    proc = subprocess.Popen([*ROP, "up", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        assert ready is not None and ready.status_code == 200, Path(log.name).read_text()[-2000:]
        assert ready.json()["checks"]["redis"]["backend"] == "embedded"
        # Every process of the hub: our children, their children, and the Redis server.
        family = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        redis_pid = int((tmp_path / "instance" / "redis" / "redis.pid").read_text())
        family.add(redis_pid)
        assert len(family) >= 4  # web master + its workers, worker, scheduler, redis
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)
    survivors = [pid for pid in family if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], f"processes left behind: {survivors}"
    output = Path(log.name).read_text()
    assert "hub's own Redis server" in output


def test_a_one_shot_command_stops_the_embedded_redis_it_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROP_")}
    env["ROP_INSTANCE_PATH"] = str(tmp_path / "instance")
    subprocess.run([*ROP, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    result = subprocess.run([*ROP, "tenants", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from hub.embedded_redis import EmbeddedRedis

    assert EmbeddedRedis(tmp_path / "instance" / "redis").url() is None
