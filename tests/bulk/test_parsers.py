"""Bulk input formats: CSV and JSON row by row, the spool, the plugin hook, bounded memory."""
from __future__ import annotations

import io
import json
import tracemalloc

import pytest

from hub.bulk.parsers import (
    CsvParser,
    format_for,
    parse_rows,
    parser_table,
    scan,
    spool,
    walk_json,
)
from hub.errors import PayloadTooLarge, ValidationFailed
from hub.plugins import build_plugin_manager, hookimpl


def rows(data: bytes, fmt: str = "csv", table=None):
    return list(parse_rows(table or parser_table(), fmt, io.BytesIO(data)))


def test_csv_rows_with_columns_in_any_order_a_bom_and_the_sku_alias():
    data = "\ufeffCustomer_No, sku ,ref_id\r\n081234567890,TEL10,r1\r\n\r\n 0812 ,PLN20, r2 \n".encode()
    assert rows(data) == [
        {"ref_id": "r1", "product_code": "TEL10", "customer_no": "081234567890", "error": None},
        {"ref_id": "r2", "product_code": "PLN20", "customer_no": "0812", "error": None},
    ]


def test_csv_row_problems_are_row_errors_not_file_errors():
    data = b"ref_id,product_code,customer_no\nr1,TEL10\n,TEL10,0812\nr3,TEL10,0812,extra\n" + \
        b"r4," + b"X" * 101 + b",0812\n"
    got = rows(data)
    assert [r["error"] for r in got] == [
        "2 fields where the header has 3",
        "ref_id is missing",
        "4 fields where the header has 3",
        "product_code is longer than 100 characters",
    ]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"ref_id,customer_no\nr1,0812\n", "lacks product_code"),
    (b"ref_id,product_code,customer_no\nr1,TEL10,\xff\xfe\n", "not UTF-8"),
])
def test_a_csv_file_that_cannot_be_read_is_refused_whole(data, message):
    with pytest.raises(ValidationFailed, match=message):
        rows(data)


def test_json_items_are_read_one_at_a_time_and_options_come_from_other_keys():
    body = {"reference": "batch-7", "items": [{"ref_id": "r1", "product_code": "TEL10", "customer_no": "0812"},
                                              {"ref_id": "r2", "product_code": "TEL10", "customer_no": 812},
                                              "nonsense"],
            "on_invalid": "skip"}
    data = json.dumps(body).encode()
    got = rows(data, "json")
    assert got[0] == {"ref_id": "r1", "product_code": "TEL10", "customer_no": "0812", "error": None}
    assert got[1]["customer_no"] == "812"
    assert "must be an object" in got[2]["error"]
    assert scan(parser_table(), "json", io.BytesIO(data), max_rows=10) == (
        3, {"reference": "batch-7", "on_invalid": "skip"})


def test_json_split_across_pieces_including_inside_a_number(monkeypatch):
    from hub.bulk import parsers

    monkeypatch.setattr(parsers, "PIECE", 7)
    data = b'{"items": [ {"ref_id": "r1", "product_code": "T", "customer_no": "1"} ,\n{"ref_id": "r2",' \
           b' "product_code": "T", "customer_no": "2"}], "n": 1234567890123}'
    meta: dict = {}
    assert [i["ref_id"] for i in walk_json(io.BytesIO(data), meta)] == ["r1", "r2"]
    assert meta == {"n": 1234567890123}


@pytest.mark.parametrize("data", [b"[1, 2]", b'{"items": [1, 2}', b'{"items": []} extra', b"{"])
def test_malformed_json_is_refused(data):
    with pytest.raises(ValidationFailed, match="JSON"):
        list(walk_json(io.BytesIO(data)))


def test_spool_hashes_as_it_copies_and_refuses_past_the_limit():
    import hashlib

    data = b"x" * 200_000
    spooled = spool(io.BytesIO(data))
    assert spooled.sha256 == hashlib.sha256(data).hexdigest() and spooled.size == len(data)
    assert spooled.rewind().read() == data
    spooled.close()
    with pytest.raises(PayloadTooLarge, match="larger"):
        spool(io.BytesIO(data), max_bytes=1000)


def test_format_is_chosen_by_request_then_name_then_content_type():
    table = parser_table()
    assert format_for(table, requested="json", file_name="a.csv") == "json"
    assert format_for(table, file_name="rows.CSV", content_type="application/octet-stream") == "csv"
    assert format_for(table, content_type="application/json; charset=utf-8") == "json"
    with pytest.raises(ValidationFailed, match="format"):
        format_for(table, content_type="application/octet-stream")
    with pytest.raises(ValidationFailed, match="unknown format"):
        format_for(table, requested="xlsx")


def test_a_plugin_adds_a_format_through_register_bulk_parsers():
    class Tsv:
        name = "tsv"
        content_types = ("text/tab-separated-values",)

        def parse(self, stream):
            for line in io.TextIOWrapper(stream, encoding="utf-8"):
                ref_id, sku, number = line.rstrip("\n").split("\t")
                yield {"ref_id": ref_id, "sku": sku, "customer_no": number}

    class Plugin:
        @hookimpl
        def register_bulk_parsers(self):
            return [Tsv()]

    table = parser_table(build_plugin_manager(extra=[Plugin()]))
    assert format_for(table, content_type="text/tab-separated-values") == "tsv"
    assert rows(b"r1\tTEL10\t0812\n", "tsv", table) == [
        {"ref_id": "r1", "product_code": "TEL10", "customer_no": "0812", "error": None}]


def test_parsing_a_large_csv_keeps_memory_bounded():
    class Rows(io.RawIOBase):
        """50,000 CSV rows made on the fly (the file itself is never in memory): held as
        parsed rows they would take about 20 MB, four times the bound."""

        def __init__(self):
            self.lines = (f"ref-{n},TEL10,0812{n:08d}\n".encode() for n in range(50_000))
            self.buffer = b"ref_id,product_code,customer_no\n"

        def readable(self):
            return True

        def readinto(self, target):
            while len(self.buffer) < len(target):
                line = next(self.lines, None)
                if line is None:
                    break
                self.buffer += line
            size = min(len(target), len(self.buffer))
            target[:size], self.buffer = self.buffer[:size], self.buffer[size:]
            return size

    tracemalloc.start()
    try:
        count = sum(1 for _ in CsvParser().parse(io.BufferedReader(Rows(), 64 * 1024)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 50_000
    assert peak < 5 * 1024 * 1024, f"parsing held {peak} bytes at its peak"


def test_results_cells_that_a_spreadsheet_would_run_are_neutralised():
    from hub.bulk.service import csv_cell

    assert csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("+62812345678") == "+62812345678"  # a phone number is a number, not a formula
    assert csv_cell("-15") == "-15"
    assert csv_cell("081234567890") == "081234567890"
    assert csv_cell(None) == ""
    assert csv_cell(1500) == 1500
