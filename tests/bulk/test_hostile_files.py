"""Bulk files made to hurt: a million columns, a 30 MB line, a 30 MB JSON value, items nested
without end, more rows than allowed. Each is refused whole, early (before a row is stored),
in memory that does not grow with the file (tracemalloc's peak, in bytes)."""
from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from hub.bulk.models import BulkItem, BulkJob
from hub.bulk.parsers import CsvParser, parse_rows, parser_table, scan
from hub.db import unit_of_work
from hub.errors import ValidationFailed

MB = 1024 * 1024


class Generated(io.RawIOBase):
    """A stream made on the fly from pieces (the file is never in memory)."""

    def __init__(self, pieces: Iterator[bytes]):
        self.pieces = iter(pieces)
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while len(self.buffer) < len(target):
            piece = next(self.pieces, None)
            if piece is None:
                break
            self.buffer += piece
        size = min(len(target), len(self.buffer))
        target[:size], self.buffer = self.buffer[:size], self.buffer[size:]
        return size


def repeated(head: bytes, unit: bytes, total: int, tail: bytes = b"") -> Iterator[bytes]:
    yield head
    block = unit * (64 * 1024 // len(unit))
    for _ in range(total // len(block)):
        yield block
    yield tail


def peak_while(fn) -> tuple[object, int]:
    """``fn()``'s outcome (its return value or the exception it raised) and the peak bytes it allocated."""
    tracemalloc.start()
    try:
        try:
            outcome = fn()
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted by the caller
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HOSTILE = {
    # 12 MB header of a million columns
    "a million columns": ("csv", lambda: repeated(b"", b"c,", 12 * MB, b"\n"), "longer than 4096 characters"),
    # a 30 MB line of commas after a good header
    "a 30 MB line of commas": ("csv", lambda: repeated(b"ref_id,product_code,customer_no\n", b",", 30 * MB, b"\n"),
                               "longer than 4096 characters"),
    # a quoted cell that goes on over 30 MB of short lines
    "a record of endless quoted lines": ("csv", lambda: repeated(b'ref_id,product_code,customer_no\nr1,"', b"x\n",
                                                                 30 * MB, b'",0812\n'), "longer than 4096 characters"),
    "17 columns": ("csv", lambda: iter([b"ref_id,product_code,customer_no" + b",x" * 14 + b"\n"]),
                   "at most 16"),
    # a 30 MB string inside one item
    "a 30 MB JSON value": ("json", lambda: repeated(b'{"items": [{"ref_id": "', b"a", 30 * MB, b'"}]}'),
                           "longer than 4096 characters"),
    "an item of 17 keys": ("json", lambda: iter([json.dumps({"items": [{f"k{n}": n for n in range(17)}]}).encode()]),
                           "at most 16"),
    "an item nested 1,500 deep": ("json", lambda: iter([b'{"items": [' + b"[" * 1500 + b"]" * 1500 + b"]}"]),
                                  "nested too deep"),
    "30 MB of nesting": ("json", lambda: repeated(b'{"items": [', b"[", 30 * MB), "nested too deep"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_in_bounded_memory(case):
    file_format, make, message = HOSTILE[case]
    stream = io.BufferedReader(Generated(make()), 64 * 1024)
    outcome, peak = peak_while(lambda: scan(parser_table(), file_format, stream, max_rows=1_000_000))
    assert isinstance(outcome, ValidationFailed), outcome
    assert message in outcome.detail
    assert peak < 1 * MB, f"refusing {case!r} held {peak} bytes at its peak"


def test_a_record_of_4096_characters_is_fine_and_one_more_is_not():
    head = b"ref_id,product_code,customer_no\n"
    line = b"r1,TEL10," + b"9" * (4096 - len(b"r1,TEL10,") - 1) + b"\n"
    assert len(line) == 4096
    assert [r["ref_id"] for r in parse_rows(parser_table(), "csv", io.BytesIO(head + line))] == ["r1"]
    with pytest.raises(ValidationFailed, match="longer than 4096"):
        list(CsvParser().parse(io.BytesIO(head + line[:-1] + b"9\n")))


def test_rows_are_counted_before_anything_is_stored(app_with_limits, tenant_factory):
    app = app_with_limits(bulk_max_rows=5)
    t = tenant_factory(scopes=["bulk:write", "bulk:read"])
    http = app.test_client()
    six = b"ref_id,product_code,customer_no\n" + b"".join(f"r{n},TEL10,0812\n".encode() for n in range(6))
    response = http.post("/v1/bulk", data=six, headers=t.headers, content_type="text/csv")
    assert response.status_code == 422 and "at most 5 rows" in response.get_json()["detail"]
    items = {"items": [{"ref_id": f"r{n}", "product_code": "TEL10", "customer_no": "0812"} for n in range(6)]}
    response = http.post("/v1/bulk", json=items, headers=t.headers)
    assert response.status_code == 422 and "at most 5 rows" in response.get_json()["detail"]
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(BulkJob)) == 0
        assert uow.session.scalar(select(func.count()).select_from(BulkItem)) == 0
    five = b"ref_id,product_code,customer_no\n" + b"".join(f"r{n},TEL10,0812\n".encode() for n in range(5))
    assert http.post("/v1/bulk", data=five, headers=t.headers, content_type="text/csv").status_code == 202


_SERVE_AND_POST = """
import json, sys, tempfile, tracemalloc
sys.path.insert(0, sys.argv[1])
from test_hostile_files import MB, repeated
from hub.app import create_app
from hub.config import Config

settings = json.loads(sys.argv[2])
app = create_app(Config.from_env({}, **settings))
body = tempfile.TemporaryFile()  # the file on disk, as a client would stream it
for piece in repeated(b"ref_id,product_code,customer_no\\n", b",", 30 * MB, b"\\n"):
    body.write(piece)
size = body.tell()
body.seek(0)
client = app.test_client()
headers = {"Authorization": sys.argv[3]}
# an ordinary request first: the database connection, the driver's types, the compiled
# statements are made once per process, not per request
assert client.get("/v1/bulk", headers=headers).status_code == 200
tracemalloc.start()
response = client.post("/v1/bulk", input_stream=body, content_type="text/csv",
                       headers={**headers, "Content-Length": str(size)})
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"status": response.status_code, "detail": response.get_json().get("detail"), "peak": peak}))
"""


def test_a_30_mb_line_through_the_app_is_refused_in_bounded_memory(app, config, tenant_factory):
    """The whole request through the WSGI app — a 30 MB body read from the client's stream to
    disk, then scanned — allocates a few pieces, not the file. In a process of its own, so
    that nothing else the suite left running counts in the peak (tracemalloc sees every
    thread). (Not through werkzeug's development server: its chunked-body reader has peaks
    of its own; the hub is served by gunicorn.)"""
    import subprocess
    import sys
    from pathlib import Path

    t = tenant_factory(scopes=["bulk:write", "bulk:read"])
    settings = {"instance_path": str(config.instance_path), "database_url": config.database_url,
                "redis_url": config.redis_url, "secret_key": config.secret_key, "log_level": "ERROR"}
    done = subprocess.run([sys.executable, "-c", _SERVE_AND_POST, str(Path(__file__).parent), json.dumps(settings),
                           t.headers["Authorization"]], capture_output=True, text=True, timeout=300, check=True)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 422, outcome
    assert "longer than 4096 characters" in outcome["detail"]
    assert outcome["peak"] < 1 * MB, f"the request held {outcome['peak']} bytes at its peak"
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(BulkJob)) == 0
