"""Webhook deliveries have their own lane: a backlog of them (a slow receiver, thousands of
events) never delays commands, the scheduler's periodic jobs or bulk files."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job

from hub.bus import publish
from hub.bus.testing import Ping, register
from hub.cli.run import up_processes
from hub.db import unit_of_work
from hub.queues import GENERAL_QUEUES, QUEUES
from hub.scheduler import Scheduler
from hub.worker import make_worker

ROOT = Path(__file__).resolve().parents[2]


class SlowReceiver:
    """A real HTTP receiver that holds every POST until released."""

    def __init__(self):
        self.release = threading.Event()
        self.received = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received += 1
                receiver.release.wait(120)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_receiver():
    receiver = SlowReceiver()
    yield receiver
    receiver.close()


def _served(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--queues"]


def test_rop_up_and_the_procfile_give_deliveries_their_own_worker():
    processes = dict(up_processes("127.0.0.1", 5000, 2, 128, 16))
    assert _served(processes["worker-1"]) == list(GENERAL_QUEUES) == _served(processes["worker-2"])
    assert "webhooks" not in GENERAL_QUEUES and "default" in GENERAL_QUEUES
    assert _served(processes["webhooks"]) == ["webhooks"] and "--threads" in processes["webhooks"]
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert "webhooks" not in procfile["worker"] and "--queues default" in procfile["worker"]
    assert "--queues webhooks" in procfile["webhooks"]
    # a worker serving every queue (no --queues) takes deliveries after periodic jobs and bulk files
    assert QUEUES.index("webhooks") > max(QUEUES.index("default"), QUEUES.index("bulk"))


def test_a_backlog_of_deliveries_does_not_delay_the_periodic_sweep(app, client, tenant_factory, slow_receiver,
                                                                   database_url, redis_url, instance_path):
    register(app)
    tenant = tenant_factory(scopes=["events:read", "webhooks:write"])
    assert client.put("/v1/webhook", json={"url": slow_receiver.url}, headers=tenant.headers).status_code == 200
    for n in range(12):
        with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
            publish(tenant.ctx, uow, Ping(n=n, mode="noop"))
            uow.commit()
    redis = app.extensions["rop"].redis
    deliveries = Queue("webhooks", connection=redis)
    assert deliveries.count == 12
    # `rop up`'s webhook worker, two deliveries at a time, both held by the slow receiver
    env = {**os.environ, "ROP_INSTANCE_PATH": str(instance_path), "ROP_DATABASE_URL": database_url,
           "ROP_REDIS_URL": redis_url, "ROP_WEBHOOK_ALLOW_PRIVATE": "1", "ROP_LOG_LEVEL": "WARNING"}
    lane = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--queues", "webhooks", "--threads", "2",
                             "--burst"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while slow_receiver.received < 2 and time.monotonic() < deadline and lane.poll() is None:
            time.sleep(0.05)
        assert slow_receiver.received == 2, lane.stdout.read() if lane.poll() is not None else "no delivery began"

        # The scheduler's periodic jobs come due meanwhile: the general worker (rop up's
        # queues) runs them all, the backlog of deliveries untouched in its own lane.
        enqueued = Scheduler(app).run_due()
        assert "transactions.sweep" in enqueued
        sweep_id = next(j.id for j in Queue("default", connection=redis).jobs if "transactions.sweep" in j.description)
        general = dict(up_processes("127.0.0.1", 5000, 1, 1, 1))["worker-1"]
        make_worker(app, _served(general)).work(burst=True)
        assert Job.fetch(sweep_id, connection=redis).get_status() == "finished"
        assert Queue("default", connection=redis).count == 0
        assert deliveries.count == 10 and slow_receiver.received == 2  # still backlogged, still held
    finally:
        slow_receiver.release.set()
        try:
            lane.wait(timeout=120)
        finally:
            if lane.poll() is None:
                lane.kill()
    assert lane.returncode == 0
    assert slow_receiver.received == 12
    listed = client.get("/v1/webhook/deliveries?limit=50", headers=tenant.headers).get_json()["items"]
    assert len(listed) == 12 and {d["status"] for d in listed} == {"delivered"}
