"""Process commands: ``rop up``, ``rop web``, ``rop worker``, ``rop relay``, ``rop scheduler``, ``rop redis``."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import click

from hub import interpreter
from hub.cli.base import CliError, main_group, make_app


def _ensure_redis_env() -> tuple[str, object | None]:
    """Make sure ROP_REDIS_URL is set for this process and its children.

    :return: the URL and the EmbeddedRedis that this call started (None otherwise).
    """
    from hub.config import Config
    from hub.embedded_redis import EmbeddedRedis

    config = Config.from_env()
    if config.redis_url:
        return config.redis_url, None
    embedded = EmbeddedRedis(config.instance_path / "redis")
    url = embedded.ensure_running()
    os.environ["ROP_REDIS_URL"] = url
    click.echo(f"rop: using the hub's own Redis server at {url} (log: {embedded.log_file})", err=True)
    return url, embedded if embedded.started_here else None


def _check_port_free(host: str, port: int) -> None:
    """Refuse at once, in one line, a port that something already listens on (another hub):
    gunicorn would otherwise fail to bind, be restarted until ``rop up`` gave up (about a
    minute), while the other processes served the same instance."""
    import socket

    try:
        addresses = {info[4][:2]: info[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError:
        return  # an unresolvable host: gunicorn says so
    for address, family in addresses.items():
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            try:
                sock.bind(address)
            except OSError as exc:
                raise CliError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (another hub? "
                               f"stop it, or choose another port: --port, PORT=... make run)") from None


@main_group.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-p", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", "-w", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Processes of the web server (each with --threads threads).")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API and the admin UI with gunicorn."""
    from hub.config import Config

    _ensure_redis_env()
    config = Config.from_env()
    metrics_dir = config.instance_path / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    args = [str(gunicorn) if gunicorn.exists() else "gunicorn",
            "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "gthread", "--graceful-timeout", "10", "--timeout", "60",
            "--config", "python:hub.gunicorn_conf",
            "hub.app:create_app()"]
    os.execv(args[0], args) if os.path.isabs(args[0]) else os.execvp(args[0], args)


@main_group.command(short_help="Run a worker of the hub's queues.")
@click.option("--queues", "-q", multiple=True, help="Queue to serve (repeatable); default: all.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
@click.option("--threads", "-t", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Jobs run at once, each in a thread (1: one job at a time, no threads). "
                   "For the provider queue, whose jobs wait on providers.")
@click.option("--db-connections", default=4, show_default=True, type=click.IntRange(1, 256),
              help="With --threads: database connections, i.e. jobs inside a unit of work at once "
                   "(provider calls hold none). More only lengthens each under one GIL.")
def worker(queues: tuple[str, ...], burst: bool, name: str | None, threads: int, db_connections: int) -> None:
    """Run a worker that processes commands, events, webhooks and provider calls."""
    from hub.queues import QUEUES
    from hub.worker import make_worker

    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        raise click.BadParameter(f"unknown queue {unknown[0]!r}; choose from {', '.join(QUEUES)}",
                                 param_hint="--queues")
    _ensure_redis_env()
    app = make_app(server=True)
    if app.extensions["rop"].config.own_url() is None:
        click.echo("rop: warning: ROP_PUBLIC_URL is not set: this worker's provider calls carry no callback URL",
                   err=True)
    w = make_worker(app, queues or None, name=name, threads=threads, db_connections=db_connections)
    interpreter.tune()
    w.work(burst=burst, with_scheduler=True, logging_level=app.extensions["rop"].config.log_level)


@main_group.command(short_help="Relay committed messages to the queues.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Outbox rows one pass takes at most.")
def relay(batch: int) -> None:
    """Move what units of work commit (their outbox rows) to the queues in batches, while
    every process leaves it to this one; several may run (each row goes once). SIGTERM or
    Ctrl-C: the pass under way ends, then the process."""
    import signal
    import threading

    from hub.bus.relay import OutboxRelay

    _ensure_redis_env()
    app = make_app(server=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    relay = OutboxRelay(app, batch=batch)
    interpreter.tune()
    relay.run(stop)


@main_group.command(short_help="Run the scheduler of periodic jobs.")
def scheduler() -> None:
    """Run the scheduler of periodic jobs (one leads; others stand by)."""
    from hub.scheduler import Scheduler

    _ensure_redis_env()
    Scheduler(make_app(server=True)).run()


def up_processes(host: str, port: int, workers: int, provider_threads: int,
                 webhook_threads: int) -> list[tuple[str, list[str]]]:
    """``rop up``'s processes, ``(name, argv)``: web, the relay, the general worker(s) (every
    queue but those with their own lane), the provider worker, the webhook worker and the
    scheduler."""
    from hub.queues import GENERAL_QUEUES

    rop = [sys.executable, "-m", "hub.cli"]
    general = [arg for name in GENERAL_QUEUES for arg in ("--queues", name)]
    return [("web", [*rop, "web", "--host", host, "--port", str(port)]),
            ("relay", [*rop, "relay"]),
            *[(f"worker-{i + 1}", [*rop, "worker", *general]) for i in range(workers)],
            ("provider", [*rop, "worker", "--queues", "provider", "--threads", str(provider_threads)]),
            ("webhooks", [*rop, "worker", "--queues", "webhooks", "--threads", str(webhook_threads)]),
            ("scheduler", [*rop, "scheduler"])]


@main_group.command(short_help="Run the whole hub (web, relay, workers, scheduler).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Worker processes to run (all queues but provider).")
@click.option("--provider-threads", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Threads of the provider-queue worker: batch jobs at once (each makes its "
                   "purchases' calls at once).")
@click.option("--webhook-threads", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Threads of the webhooks-queue worker (deliveries in flight at once).")
@click.option("--max-restarts", default=5, show_default=True, type=click.IntRange(0, 1000),
              help="Restarts of one process within --restart-window; one more death stops everything "
                   "and exits 1.")
@click.option("--restart-window", default=60.0, show_default=True, type=click.FloatRange(1, 86400),
              help="Seconds over which --max-restarts counts.")
def up(host: str, port: int, workers: int, provider_threads: int, webhook_threads: int, max_restarts: int,
       restart_window: float) -> None:
    """Run web, the relay, worker(s), the provider and webhook workers and scheduler; restart any that dies.

    Webhook deliveries have their own worker (the ``webhooks`` queue), so a backlog of them
    never delays commands, the periodic jobs or bulk files, which the general worker(s) serve.

    A dead process starts again after a backoff (0.5 s, doubled after each death up to 30 s,
    back to 0.5 s once it has stayed up 60 s) while the others keep serving; the embedded
    Redis server, when this command started it, is restarted the same way. More than
    --max-restarts deaths of one process within --restart-window seconds stop everything
    (exit 1). Ctrl-C or SIGTERM stops them all and leaves no process behind.
    """
    from hub.config import Config, served_url
    from hub.supervisor import Child, GaveUp, Policy, Supervisor, become_subreaper

    config = Config.from_env()
    # Outside the embedded defaults providers need ROP_PUBLIC_URL to call back: refuse to
    # start without it. On them, the hub's callbacks go to where it serves.
    config.require_public_url()
    _check_port_free(host, port)
    config.record_served_url(served_url(host, port))
    become_subreaper()  # before the embedded Redis server daemonizes: it is re-parented to us
    _url, embedded = _ensure_redis_env()
    children = [Child(name, argv) for name, argv in up_processes(host, port, workers, provider_threads,
                                                                 webhook_threads)]
    if embedded is not None:
        def start_redis() -> int:
            embedded.ensure_running()
            return embedded.pid() or 0

        # Started above; supervised from here on and restarted on the same address.
        children.insert(0, Child("redis", start_fn=start_redis, pid=embedded.pid(), started_at=time.monotonic()))
    supervisor = Supervisor(children, Policy(max_restarts=max_restarts, window=restart_window),
                            echo=lambda line: click.echo(line, err=True))

    def started() -> None:
        pids = ", ".join(f"{c.name} {c.pid}" for c in children)
        click.echo(f"rop: serving on http://{host}:{port} (web, relay, {workers} worker(s), provider worker "
                   f"x{provider_threads} threads, webhook worker x{webhook_threads} threads, scheduler; "
                   f"pids: {pids}); Ctrl-C to stop", err=True)

    try:
        supervisor.run(on_started=started)
    except GaveUp as exc:
        raise CliError(f"stopped: {exc}") from None
    finally:
        if embedded is not None:
            embedded.stop()
            click.echo("rop: the hub's Redis server stopped", err=True)
        click.echo("rop: stopped", err=True)


@main_group.group()
def redis() -> None:
    """The hub's own (embedded) Redis server."""


@redis.command("status")
def redis_status() -> None:
    """Say whether the embedded Redis server runs, and where."""
    from hub.config import Config
    from hub.embedded_redis import EmbeddedRedis

    config = Config.from_env()
    if config.redis_url:
        click.echo(f"ROP_REDIS_URL is set ({config.redis_url}); the embedded server is not used")
        return
    url = EmbeddedRedis(config.instance_path / "redis").url()
    if not url:
        raise CliError("the embedded Redis server is not running")
    click.echo(f"running at {url}")


@redis.command("stop", short_help="Stop the embedded Redis server.")
def redis_stop() -> None:
    """Stop the embedded Redis server (after stopping the hub's processes)."""
    from hub.config import Config
    from hub.embedded_redis import EmbeddedRedis

    config = Config.from_env()
    stopped = EmbeddedRedis(config.instance_path / "redis").stop()
    click.echo("stopped" if stopped else "it was not running")
