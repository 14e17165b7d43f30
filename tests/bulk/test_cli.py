"""``rop bulk``: submit with --follow (a progress bar until the job is done), status, results, cancel."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

from .conftest import csv_body, run_until_settled


def _env(config, database_url, redis_url):
    return {**os.environ, "ROP_INSTANCE_PATH": str(config.instance_path), "ROP_DATABASE_URL": database_url,
            "ROP_REDIS_URL": redis_url}


def test_submit_follow_shows_progress_until_the_job_completes(app, config, database_url, redis_url, live, funded,
                                                              fast, tmp_path):
    tenant = funded.tenant
    path = tmp_path / "rows.csv"
    path.write_bytes(csv_body([(f"cli-{n}", "TEL10", f"08120002{n:04d}") for n in range(1, 6)]))
    env = _env(config, database_url, redis_url)
    slug = _slug(app, tenant.id)
    follower = subprocess.Popen([sys.executable, "-m", "hub.cli", "bulk", "submit", str(path), "--tenant", slug,
                                 "--follow"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = follower.stdout.readline()
        assert first.startswith("submitted blk_"), first + follower.stderr.read()
        job_id = first.split()[1].rstrip(":")
        run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert f"{job_id} completed: 5 rows, 5 valid, 0 invalid; 5 succeeded" in out
    assert "5/5" in err and "row/s" in err  # tqdm's bar: settled/valid, rate

    def rop(*args):
        return subprocess.run([sys.executable, "-m", "hub.cli", "bulk", *args, "--tenant", slug], check=False,
                              env=env, capture_output=True, text=True, timeout=120)

    status = rop("status", job_id, "--json")
    assert json.loads(status.stdout)["succeeded"] == 5
    results = list(csv.DictReader(io.StringIO(rop("results", job_id).stdout)))
    assert [r["status"] for r in results] == ["succeeded"] * 5
    again = rop("cancel", job_id)
    assert again.returncode == 1 and "completed" in again.stderr and again.stderr.count("\n") == 1
    missing = rop("status", "blk_nope")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_a_rejected_file_exits_non_zero(app, config, database_url, redis_url, live, funded, fast, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(csv_body([("x-1", "NOPE", "081200001234")]))
    env = _env(config, database_url, redis_url)
    submitted = subprocess.run([sys.executable, "-m", "hub.cli", "bulk", "submit", str(path), "--tenant",
                                _slug(app, funded.tenant.id), "--json"], check=False, env=env, capture_output=True,
                               text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    run_until_settled(app, funded.tenant.id, job_id, lambda v: v["status"] == "rejected")
    status = subprocess.run([sys.executable, "-m", "hub.cli", "bulk", "status", job_id, "--tenant",
                             _slug(app, funded.tenant.id), "--follow"], check=False, env=env, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0 and "rejected" in status.stdout
    bad = subprocess.run([sys.executable, "-m", "hub.cli", "bulk", "submit", str(tmp_path / "none.csv"), "--tenant",
                          "x"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def _slug(app, tenant_id):
    from hub.db import unit_of_work
    from hub.tenancy.models import Tenant

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.get(Tenant, tenant_id).slug
