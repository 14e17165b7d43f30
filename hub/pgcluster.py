"""A private PostgreSQL cluster, for what stops the database under a running hub: the outage
tests (tests/outages) and the fault suite (bench/chaos.py).

Made with the machine's own ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/<version>/bin``
or PATH) in a temporary folder, listening on 127.0.0.1 on a free port; run as the
``postgres`` user when the tests run as root (PostgreSQL refuses root). Where neither the
binaries nor a way to run them exists, :func:`find_binaries` says why (the tests skip, the
fault suite leaves that fault out).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from hub.embedded_redis import free_port


def find_binaries() -> tuple[Path | None, str]:
    """The folder holding ``initdb`` and ``pg_ctl``, or None and why not."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            if os.geteuid() == 0:
                try:
                    pwd.getpwnam("postgres")
                except KeyError:
                    return None, "running as root and there is no 'postgres' user to run initdb as"
                if not shutil.which("runuser"):
                    return None, "running as root and there is no runuser to run initdb as 'postgres'"
            return folder, ""
    return None, "no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH"


class PrivateCluster:
    """``start()``, ``stop(mode)``, ``url`` (``postgresql://postgres@127.0.0.1:<port>/postgres``)."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        self.base = Path(tempfile.mkdtemp(prefix="rop-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.base, account.pw_uid, account.pw_gid)
        os.chmod(self.base, 0o700)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.binaries / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {(result.stderr or result.stdout).strip()[-500:]}")

    def start(self, durable: bool = False) -> None:
        """Start the server; ``durable``: with PostgreSQL's own durability (fsync, synchronous
        commits), for what must survive an immediate stop. Without it, a commit returns before its
        WAL is written and an immediate stop loses it (fine for tests that never stop that way)."""
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60", "-o", options,
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended (in-flight statements fail), as a restart does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "immediate", durable: bool = False) -> None:
        """Stop (``immediate``: no checkpoint, sessions cut, crash recovery at the start) and start."""
        self.stop(mode)
        self.start(durable)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)
