"""What a newcomer meets submitting a file: a wrong header named as it is, ``--follow``'s counts
in step with its bar, and a job being validated showing what is known."""
from __future__ import annotations

import re
import subprocess
import sys
import threading

from hub.worker import make_worker

from .conftest import csv_body, run_until_settled
from .test_cli import _env, _slug

ROP = [sys.executable, "-m", "hub.cli"]


def test_a_wrong_header_is_named_with_the_files_own_columns(app, config, database_url, redis_url, funded, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("ref,sku,msisdn\nr1,TEL10,081200001234\n")
    done = subprocess.run([*ROP, "bulk", "submit", str(path), "--tenant", _slug(app, funded.tenant.id)],
                          env=_env(config, database_url, redis_url), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "lacks ref_id, customer_no" in done.stderr
    assert "the file's columns are ref, sku, msisdn" in done.stderr  # its own, not the expected ones again
    assert "needs ref_id, product_code, customer_no" in done.stderr


def test_follow_shows_the_counts_of_the_same_poll_as_the_bar(app, config, database_url, redis_url, live, funded,
                                                             fast, tmp_path):
    tenant = funded.tenant
    path = tmp_path / "rows.csv"
    numbers = ["081200001234", "081200009999", "081200011234", "081200019999", "081200021234"]
    path.write_bytes(csv_body([(f"f-{n}", "TEL10", number) for n, number in enumerate(numbers)]))
    follower = subprocess.Popen([*ROP, "bulk", "submit", str(path), "--tenant", _slug(app, tenant.id), "--follow"],
                                env=_env(config, database_url, redis_url), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    bar_shown = threading.Event()

    def read_err():
        while chunk := follower.stderr.read(1):
            err.append(chunk)
            if chunk == "]" and re.search(r"blk_\w+: .*0/5 \[", "".join(err[-200:])):
                bar_shown.set()

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    try:
        job_id = follower.stdout.readline().split()[1].rstrip(":")
        make_worker(app, ["commands"]).work(burst=True)  # validated: the bar of settled rows appears at 0/5
        assert bar_shown.wait(60), "".join(err)
        run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")  # all settle at once
        out, _ = follower.communicate(timeout=60)
        reader.join(10)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, "".join(err)
    assert "3 succeeded, 2 failed" in out
    frames = re.findall(r"(\d+)/5 \[[^\]]*failed=(\d+), ok=(\d+)", "".join(err))
    assert frames and frames[-1] == ("5", "2", "3"), frames
    for shown, failed, ok in frames:
        assert int(shown) == int(failed) + int(ok), frames  # every frame: the bar and its counts agree


def test_a_job_being_validated_shows_what_is_known(app, client, funded, submit, config, database_url, redis_url):
    response = submit(funded.tenant, csv_body([("v-1", "TEL10", "081200001234")]))
    assert response.status_code == 202
    job = client.get(f"/v1/bulk/{response.get_json()['id']}", headers=funded.tenant.headers).get_json()
    assert job["status"] == "validating"
    assert job["wallet_id"] == funded.wallet_id and job["currency"] == "IDR"  # known from the submission
    assert job["amount"] is None  # not known yet: not 0
    assert job["reference"] is None and len(job["file_sha256"]) == 64  # none given: the file's hash is its key
    shown = subprocess.run([*ROP, "bulk", "status", job["id"], "--tenant", _slug(app, funded.tenant.id)],
                           env=_env(config, database_url, redis_url), capture_output=True, text=True, timeout=120,
                           check=False)
    assert shown.returncode == 0 and "validating" in shown.stdout, shown.stderr
    assert "None" not in shown.stdout and "amount known once validated" in shown.stdout
    run_until_settled(app, funded.tenant.id, job["id"], lambda v: v["status"] != "validating")
    later = client.get(f"/v1/bulk/{job['id']}", headers=funded.tenant.headers).get_json()
    assert later["amount"] > 0 and later["currency"] == "IDR"
