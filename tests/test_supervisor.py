"""``rop up`` supervises: a dead process comes back while the others keep serving, a process
that keeps dying makes it give up (exit 1), and SIGTERM leaves nothing behind.

Through the real ``rop up`` (a subprocess on a tmp instance folder: embedded SQLite and
embedded Redis, a free port); the backoff rules through :class:`hub.supervisor.Supervisor`
in a subprocess of its own (it installs signal handlers and becomes a subreaper) with
children that exit by themselves. Bounded polls only.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

from hub.embedded_redis import free_port
from hub.providers.testing import wait_for

ROP = [sys.executable, "-m", "hub.cli"]
pytestmark = pytest.mark.slow


class RopUp:
    """``rop up`` on a fresh instance folder, with its output in ``up.log``."""

    def __init__(self, tmp_path: Path, *args: str):
        self.instance = tmp_path / "instance"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROP_")}
        self.env["ROP_INSTANCE_PATH"] = str(self.instance)
        subprocess.run([*ROP, "db", "upgrade"], env=self.env, check=True, capture_output=True, timeout=120)
        self.port = free_port()
        self.log_path = tmp_path / "up.log"
        self.log = open(self.log_path, "w+")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen([*ROP, "up", "--port", str(self.port), *args], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.seen: set[int] = set()

    def output(self) -> str:
        return self.log_path.read_text()

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 90) -> None:
        try:
            wait_for(self.ready, timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(f"rop up is not ready:\n{self.output()[-3000:]}") from None

    def child(self, marker: str) -> int | None:
        """The pid of the child whose command line contains ``marker`` (None: none now); only
        group leaders: what a dead child left behind is re-parented to ``rop up`` too."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        for proc in children:
            try:
                if (marker in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE
                        and os.getpgid(proc.pid) == proc.pid):
                    return proc.pid
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        return None

    def redis_pid(self) -> int:
        return int((self.instance / "redis" / "redis.pid").read_text())

    def family(self) -> set[int]:
        """Every process of the hub now: descendants of ``rop up`` (the Redis server among them)."""
        pids = {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        self.seen |= pids
        return pids

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            redis = psutil.Process(self.redis_pid())  # a restarted one too
            if str(self.instance) in " ".join(redis.cmdline()):
                self.seen.add(redis.pid)
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
            pass
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _replaced(up: RopUp, marker: str, old: int, timeout: float = 60) -> int:
    """Wait until the child ``marker`` runs again with a pid other than ``old``; return it."""
    def new_pid():
        pid = up.child(marker)
        return pid if pid is not None and pid != old else None
    try:
        return wait_for(new_pid, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(f"{marker} did not come back:\n{up.output()[-3000:]}") from None


def test_killed_processes_come_back_with_the_others_serving_and_sigterm_leaves_nothing(tmp_path):
    up = RopUp(tmp_path)
    try:
        up.wait_ready()
        up.family()
        web, provider, scheduler = up.child("gunicorn"), up.child("--queues provider"), up.child("scheduler")
        assert web and provider and scheduler

        # The provider worker: the API answers meanwhile, and the worker comes back.
        os.kill(provider, signal.SIGKILL)
        assert up.ready(), "the API went down with the provider worker"
        assert up.proc.poll() is None
        new_provider = _replaced(up, "--queues provider", provider)
        assert up.child("scheduler") == scheduler  # the others were left alone

        # The gunicorn master: its orphaned workers go, a new master serves on the same port.
        old_workers = [p.pid for p in psutil.Process(web).children()]
        os.kill(web, signal.SIGKILL)
        new_web = _replaced(up, "gunicorn", web)
        up.wait_ready(60)
        assert not [pid for pid in old_workers if _alive(pid)]

        # The embedded Redis server: restarted on the same address.
        redis = up.redis_pid()
        os.kill(redis, signal.SIGKILL)
        wait_for(lambda: up.redis_pid() != redis and _alive(up.redis_pid()), timeout=60, interval=0.1)
        up.wait_ready(60)
        assert up.proc.poll() is None
        assert up.child("--queues provider") == new_provider and up.child("gunicorn") == new_web

        log = up.output()
        assert re.search(rf"provider \(pid {provider}\) killed by SIGKILL .*restarting in 0\.5 s", log)
        assert re.search(rf"web \(pid {web}\) killed by SIGKILL", log)
        assert re.search(rf"redis \(pid {redis}\) killed by SIGKILL", log)

        family = up.family() | {up.redis_pid()}
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=60) == 0
        survivors = [pid for pid in family | up.seen if _alive(pid)]
        assert survivors == [], f"processes left behind: {survivors}\n{up.output()[-2000:]}"
        assert "rop: stopped" in up.output()
    finally:
        up.close()


def test_a_process_that_keeps_dying_makes_rop_up_give_up_with_exit_1(tmp_path):
    up = RopUp(tmp_path, "--max-restarts", "2", "--restart-window", "600")
    try:
        up.wait_ready()
        up.family()
        redis = up.redis_pid()
        pid = up.child("scheduler")
        for _ in range(2):  # two deaths are restarted...
            os.kill(pid, signal.SIGKILL)
            pid = _replaced(up, "scheduler", pid)
            up.family()
        assert up.ready()
        os.kill(pid, signal.SIGKILL)  # ...the third gives up
        assert up.proc.wait(timeout=60) == 1
        log = up.output()
        assert "restarting in 0.5 s" in log and "restarting in 1 s" in log  # the backoff doubles
        last = log.strip().splitlines()
        assert any(re.search(r"error: stopped: scheduler \(pid \d+\) killed by SIGKILL; it died 3 times", line)
                   for line in last), log[-2000:]
        survivors = [p for p in up.seen | {redis} if _alive(p)]
        assert survivors == [], f"processes left behind: {survivors}"
    finally:
        up.close()


SUPERVISE = textwrap.dedent("""
    import sys
    from hub.supervisor import Child, GaveUp, Policy, Supervisor

    py = sys.executable
    steady = Child("steady", [py, "-c", "import time; time.sleep(600)"])
    flaky = Child("flaky", [py, "-c", sys.argv[1]])
    policy = Policy(backoff_first=0.05, backoff_cap=0.2, stable_after=float(sys.argv[2]),
                    max_restarts=int(sys.argv[3]),
                    window=600, remnant_timeout=5, stop_timeout=5)
    try:
        Supervisor([steady, flaky], policy, echo=lambda line: print(line, flush=True)).run()
    except GaveUp as exc:
        print("gave up:", exc, flush=True)
        sys.exit(1)
""")


def _supervise(child_code: str, stable_after: float, max_restarts: int, stop_after_restarts: int | None = None):
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, child_code, str(stable_after), str(max_restarts)],
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if stop_after_restarts is not None and sum("flaky restarted" in x for x in lines) == stop_after_restarts:
                proc.send_signal(signal.SIGTERM)
                stop_after_restarts = None
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, lines


def test_the_backoff_doubles_up_to_its_cap_then_the_supervisor_gives_up():
    code, lines = _supervise("import sys; sys.exit(3)", stable_after=600, max_restarts=4)
    delays = [float(m.group(1)) for line in lines if (m := re.search(r"flaky \(pid \d+\) exited with status 3 .*"
                                                                       r"restarting in ([\d.]+) s", line))]
    assert delays == [0.05, 0.1, 0.2, 0.2], lines
    assert code == 1 and re.match(r"gave up: flaky \(pid \d+\) exited with status 3; it died 5 times", lines[-1]), lines
    assert not any("steady" in line for line in lines)  # the other child was never touched


def test_a_child_that_stayed_up_long_enough_starts_its_backoff_over():
    # Each run stays up at least 0.3 s, more than stable_after: every death is a first one.
    code, lines = _supervise("import sys, time; time.sleep(0.3); sys.exit(3)", stable_after=0.2,
                             max_restarts=100, stop_after_restarts=4)
    delays = [float(m.group(1)) for line in lines if (m := re.search(r"restarting in ([\d.]+) s", line))]
    assert len(delays) == 4 and set(delays) == {0.05}, lines
    assert code == 0 and not any(line.startswith("gave up") for line in lines)
