"""gunicorn settings that the hub needs whatever the command line says.

gunicorn's own log lines (start, worker boot, errors) go through the hub's structured
logging, so every line the web process writes is one JSON object.
"""
from __future__ import annotations

import os
import sys

from gunicorn.glogging import Logger
from prometheus_client import multiprocess

from hub.logging import configure_logging


class HubGunicornLogger(Logger):
    """gunicorn's logger, handing its records to the root logger (structlog's formatter)."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.handlers = []
            log.propagate = True


logger_class = HubGunicornLogger


def on_starting(server):  # gunicorn hook: the master process
    configure_logging(os.environ.get("ROP_LOG_LEVEL", "INFO").upper(),
                      os.environ.get("ROP_LOG_FORMAT", "json"))
    # A bad setting stops the server here with one line, before any worker boots (each would
    # otherwise fail with a traceback, and gunicorn retry them).
    from hub.config import Config, ConfigError

    try:
        Config.from_env().require_public_url()  # providers must be able to call the hub back
    except ConfigError as exc:
        sys.stderr.write(f"rop: error: {exc}\n")
        sys.stderr.flush()
        os._exit(1)


def when_ready(server):  # gunicorn hook: the master, listening
    """On the embedded defaults without ROP_PUBLIC_URL, record the address it serves on: the
    hub's callback URLs (and every process of the instance folder) use it."""
    from hub.config import Config, served_url

    for listener in server.LISTENERS:
        address = listener.sock.getsockname()
        if isinstance(address, tuple):  # TCP, not a unix socket
            Config.from_env().record_served_url(served_url(str(address[0]), int(address[1])))
            return


def child_exit(server, worker):  # gunicorn hook: drop a dead worker's live gauges
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):  # gunicorn hook: a worker, its app loaded
    """The worker's requests hand what they commit to a background relay (hub.bus.relay):
    their webhook deliveries, and their messages while no relay process runs. Its start-up
    objects are then frozen out of the garbage collector's sight (hub.interpreter)."""
    from hub import interpreter
    from hub.bus.relay import start_background_relay

    start_background_relay(worker.wsgi)
    interpreter.tune()


def worker_exit(server, worker):  # gunicorn hook: a worker, stopping gracefully
    """Send what the worker's relay holds before the process ends."""
    from hub.bus.relay import stop_background_relay

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        stop_background_relay(app)
