"""The scheduler: one leader however many run; each slot of a periodic job enqueued once."""
from __future__ import annotations

import threading

from rq import Queue

from hub.scheduler import LEADER_KEY, PeriodicJob, Scheduler, register_periodic



def record_call() -> None:
    """A periodic job's body for the tests: counts its runs in Redis."""
    from flask import current_app

    current_app.extensions["rop"].redis.incr("probe:ran")


def test_only_one_of_two_schedulers_leads(app):
    first, second = Scheduler(app), Scheduler(app)
    assert first.try_lead() is True
    assert second.try_lead() is False
    assert first.try_lead() is True  # renewal
    app.extensions["rop"].redis.delete(LEADER_KEY)  # the lease lapses (leader died)
    assert second.try_lead() is True
    assert first.try_lead() is False


def test_a_slot_is_enqueued_once_even_by_two_leaders(app):
    register_periodic(app, PeriodicJob("probe", "tests.test_scheduler.record_call", every=60))
    first, second = Scheduler(app), Scheduler(app)
    # (the services' own periodic jobs run alongside; only the probe is looked at)
    assert "probe" in first.run_due(now=120.0)
    assert "probe" not in second.run_due(now=150.0)  # same slot (120 // 60 == 150 // 60)
    assert "probe" in first.run_due(now=181.0)
    queue = Queue("default", connection=app.extensions["rop"].redis)
    assert sorted(j for j in queue.job_ids if j.startswith("periodic-probe")) == ["periodic-probe-2", "periodic-probe-3"]


def test_enqueued_periodic_job_runs_in_a_worker(app):
    from hub.worker import make_worker

    register_periodic(app, PeriodicJob("probe", "tests.test_scheduler.record_call", every=60))
    Scheduler(app).run_due(now=60.0)
    make_worker(app, ["default"]).work(burst=True)
    assert int(app.extensions["rop"].redis.get("probe:ran")) == 1


def test_run_loop_stops_on_request_and_releases_the_lease(app):
    scheduler = Scheduler(app, tick=0.05)
    thread = threading.Thread(target=scheduler.run, kwargs={"install_signals": False})
    thread.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if app.extensions["rop"].redis.get(LEADER_KEY):
                break
            deadline.wait(0.05)
        assert app.extensions["rop"].redis.get(LEADER_KEY) is not None
    finally:
        scheduler.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert app.extensions["rop"].redis.get(LEADER_KEY) is None
