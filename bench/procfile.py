"""The Procfile's processes for the benches that run the hub end to end (bulk, transactions),
the CPU they use, and the customer numbers their purchases go to.

Imported by the bench scripts as a sibling module (``python bench/<name>.py`` puts ``bench/``
on ``sys.path``).
"""
from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def start(env: dict, *, port: int, workers: int, provider_workers: int, threads: int,
          web_timeout: int | None = None, db_connections: int | None = None,
          output: IO[bytes] | None = None, web_workers: int = 2) -> dict[str, subprocess.Popen]:
    """web (gunicorn ``web_workers``×8 gthread, the Procfile's 2 by default), ``workers`` × the
    Procfile's worker line, ``provider_workers`` thread workers on the provider queue
    (``--db-connections`` when given), the relay and the scheduler. Their output goes to ``output`` when
    given (else this process's)."""
    rop = str(Path(sys.executable).with_name("rop"))
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web = [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(web_workers), "--threads", "8",
           "--worker-class", "gthread", "--config", "python:hub.gunicorn_conf"]
    if web_timeout is not None:
        web += ["--timeout", str(web_timeout)]
    streams = {"stdout": output, "stderr": subprocess.STDOUT} if output is not None else {}
    procs = {"web": subprocess.Popen([*web, "hub.app:create_app()"], env=env, **streams),
             "relay": subprocess.Popen([rop, "relay"], env=env, **streams)}
    for n in range(workers):
        procs[f"worker{n + 1}"] = subprocess.Popen([rop, "worker", "--queues", "commands", "--queues", "events",
                                                   "--queues", "default", "--queues", "bulk"], env=env, **streams)
    procs["webhooks"] = subprocess.Popen([rop, "worker", "--queues", "webhooks", "--threads", "16"],
                                         env=env, **streams)
    for n in range(provider_workers):
        pool = ["--db-connections", str(db_connections)] if db_connections else []
        procs[f"provider{n + 1}"] = subprocess.Popen([rop, "worker", "--queues", "provider", "--threads",
                                                     str(threads), *pool], env=env, **streams)
    procs["scheduler"] = subprocess.Popen([rop, "scheduler"], env=env, **streams)
    return procs


def stop(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every process, then kill what has not exited 20 s later."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(port: int, timeout: float = 300) -> None:
    """Return once ``/healthz`` answers 200 on ``port``. :raise RuntimeError: after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the web process did not answer /healthz")


#: the endings of the sandbox's test numbers (a failure, a refund, a timeout, a request lost
#: on the way …: rop_sandbox's module docstring); every other number succeeds at once
SANDBOX_TEST_ENDINGS = frozenset({"9999", "4444", "8888", "7777", "6666", "5555", "3333", "2222"})


def ordinary_number(n: int) -> str:
    """The ``n``-th ordinary Telkomsel number: one the sandbox answers with a success (a test
    number's ending has its last digit made 0)."""
    number = f"0812{n % 100_000_000:08d}"
    return number[:-1] + "0" if number[-4:] in SANDBOX_TEST_ENDINGS else number


def postgres_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL server processes on this machine (every
    backend of its clusters: run the bench on an otherwise quiet server)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
    return total


def process_cpu(procs: dict[str, subprocess.Popen]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used, its children included (gunicorn's
    workers), and ``postgres``: :func:`postgres_cpu`."""
    import psutil

    spent: dict[str, float] = {}
    for name, proc in procs.items():
        try:
            root = psutil.Process(proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        total = 0.0
        for member in tree:
            try:
                times = member.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        spent[name] = total
    spent["postgres"] = postgres_cpu()
    return spent
