"""docs/getting-started.md works as written: its commands, run in order, do what it says.

The guide's fenced blocks say what they are: ```` ```sh server ```` is terminal 1 (``make
run``: started in the background, stopped with Ctrl-C's SIGINT at the end), ```` ```sh ````
blocks are terminal 2 (run in order by one bash, so that their variables carry over, and
each must succeed), ```` ```text ```` blocks show output and are not run.

The hub is started the way the guide says, in a folder of its own (the clone's Makefile,
lock and plugins linked into it, ``.venv`` being the suite's own installed environment):
``make run`` with none of the suite's ``ROP_*`` variables, so a SQLite file and the hub's
own Redis server under that folder's ``instance/``, on a free port (``PORT``, which the
guide honours). Then the outcomes the guide claims are checked: the purchase succeeded, the
receiver got the purchase's events with verified signatures and refused a forged one, and
the bulk file's results list every row.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "getting-started.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
#: What the clone must hold for ``make run`` (linked into the test's folder).
CLONE_FILES = ("Makefile", "requirements.lock", "setup.cfg", "setup.py", "pyproject.toml", "plugins")
#: The longest the whole guide may take (a stuck command fails the test instead of hanging it).
SCRIPT_TIMEOUT = 240


def guide_blocks() -> list[tuple[str, str]]:
    """``(info string, body)`` of every fenced block of the guide, in order."""
    return [(info.strip(), body) for info, body in FENCE.findall(GUIDE.read_text(encoding="utf-8"))]


def test_every_block_of_the_guide_says_whether_it_runs():
    blocks = guide_blocks()
    kinds = [info for info, _ in blocks]
    assert set(kinds) <= {"sh", "sh server", "text"}, f"blocks must be sh, sh server or text: {sorted(set(kinds))}"
    assert kinds.count("sh server") == 1 and kinds[0] == "sh server", "the guide starts the hub first, once"
    commands = "\n".join(body for info, body in blocks if info == "sh")
    # The public surface only: the CLI, curl and standard Python; never the hub's internals.
    assert "make run" in blocks[0][1]
    assert not re.search(r"\bimport hub\b|from hub\b|sqlite3 |redis-cli", commands)


def _terminal_2_script() -> str:
    """Every ``sh`` block, in order, in one bash script that stops at the first failure and
    says which block it was in."""
    parts = ["set -euo pipefail"]
    for number, (info, body) in enumerate(guide_blocks()):
        if info == "sh":
            parts += [f"echo \">>> block {number} $(date +%T)\" >&2", body]
    return "\n".join(parts) + "\n"


def _stop(process: subprocess.Popen, sig: int, wait: float) -> None:
    """Send ``sig`` to the process's group; SIGKILL the group if it has not exited after ``wait`` s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever is left in the group (a background job of the script)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _session_processes(sid: int) -> list[int]:
    """The processes of session ``sid`` still alive (every process ``make run`` started is
    in the session the test made for it, whatever its process group)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as gone), waiting up to ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X") or time.monotonic() > deadline:
            return state in ("Z", "X")
        time.sleep(0.2)


@pytest.mark.timeout(SCRIPT_TIMEOUT + 120)
def test_the_getting_started_guide_runs_as_written(tmp_path):
    for tool in ("make", "curl", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"the guide needs {tool}")
    venv = Path(sys.prefix)
    if not (venv / ".installed").exists():
        pytest.skip("the guide runs in the .venv that make install made (not this interpreter's)")
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in CLONE_FILES:
        (clone / name).symlink_to(ROOT / name)
    (clone / ".venv").symlink_to(venv)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROP_", "PROMETHEUS_", "MAKE", "MFLAGS", "PYTEST_"))}
    env.update(PORT=str(free_port()), RECEIVER_PORT=str(free_port()))
    server_log, script_log = clone / "terminal-1.log", clone / "terminal-2.log"
    [server_block] = [body for info, body in guide_blocks() if info == "sh server"]
    with server_log.open("wb") as out1, script_log.open("wb") as out2:
        server = subprocess.Popen(["bash", "-euo", "pipefail", "-c", server_block], cwd=clone, env=env,
                                  stdout=out1, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        script = subprocess.Popen(["bash", "-c", _terminal_2_script()], cwd=clone, env=env,
                                  stdout=out2, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + SCRIPT_TIMEOUT
            while script.poll() is None and server.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            finished = script.poll()
        finally:
            _stop(script, signal.SIGTERM, 5)  # the receiver the guide started in the background too
            server_running = server.poll() is None
            pid_file = clone / "instance" / "redis" / "redis.pid"
            redis_pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
            _stop(server, signal.SIGINT, 30)  # Ctrl-C in terminal 1
            left_behind = _session_processes(server.pid)
            for pid in left_behind:
                os.kill(pid, signal.SIGKILL)
    report = (f"\n--- terminal 2 ---\n{_tail(script_log)}\n--- terminal 1 ---\n{_tail(server_log)}")
    assert server_running, "make run stopped before the guide was done" + report
    assert finished == 0, f"the guide's commands failed (exit {finished})" + report
    # Ctrl-C ends make (and so the shell) by SIGINT once rop up has stopped everything.
    assert server.returncode in (0, -signal.SIGINT, 128 + signal.SIGINT), \
        f"Ctrl-C did not stop make run cleanly (exit {server.returncode})" + report
    assert "rop: stopped" in server_log.read_text(), "rop up did not stop" + report
    assert not left_behind, f"processes of make run outlived Ctrl-C: {left_behind}" + report

    # Ctrl-C stopped everything: the hub's Redis server too.
    assert redis_pid, "make run did not start the hub's own Redis server" + report
    assert _gone(redis_pid), "the hub's Redis server outlived Ctrl-C" + report

    # 5. The purchase succeeded, and the receiver verified its events.
    purchase = json.loads((clone / "purchase.json").read_text())
    assert purchase["status"] == "succeeded" and purchase["serial_number"], purchase
    assert (purchase["price"], purchase["currency"]) == (10_557, "IDR"), "the guide says 10,557 (cost + 2 %)"
    deliveries = (clone / "webhooks.log").read_text().splitlines()
    verified = [line.split() for line in deliveries if line.startswith("verified ")]
    events = {fields[1] for fields in verified if len(fields) >= 4 and fields[3] == purchase["id"]}
    assert {"transaction.accepted", "transaction.succeeded"} <= events, deliveries
    assert any(line.startswith("REJECTED ") for line in deliveries), "the forged request was not refused"
    assert "\n401\n" in "\n" + script_log.read_text(), "the forged request was not answered 401" + report

    # 6. The bulk file's results: every row, the last one failed as the guide says.
    with (clone / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["ref_id"] for row in rows] == ["bulk-1", "bulk-2", "bulk-3", "bulk-4"], rows
    assert [row["status"] for row in rows] == ["succeeded", "succeeded", "succeeded", "failed"], rows
    assert all(row["transaction_id"].startswith("trx_") for row in rows), rows
    assert "invalid customer number" in rows[3]["error"], rows
    assert "completed: 4 rows, 4 valid, 0 invalid; 3 succeeded, 1 failed" in script_log.read_text(), \
        "rop bulk status --follow did not end with the counts the guide shows" + report
