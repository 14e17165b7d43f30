"""Input formats of bulk files, and the spool an upload is streamed into.

A file is never held in memory whole: the upload is copied in 64 KiB pieces to a
temporary file (hashed on the way, for idempotency), and each format's parser reads
that file row by row. Built-in formats: CSV (columns ``ref_id,product_code,customer_no``
in any order, a header line first) and JSON (``{"items": [{...}, ...]}``, decoded one item
at a time). Plugins add formats through the ``register_bulk_parsers`` hook; a plugin's
format with the same name as a built-in one replaces it.

A parser yields one dict per input row: ``ref_id``, ``product_code`` (``sku`` is accepted
as an alias) and ``customer_no``; a row it cannot read may carry ``error`` instead, which
makes it an invalid row of the report rather than a failure of the whole file.

Bounds, whatever the file (memory stays a few pieces of it): a CSV record or a JSON value
(an item, an option) of at most :data:`MAX_LINE` characters, at most :data:`MAX_COLUMNS`
fields per record or keys per item, and — counted by :func:`scan` before anything is
inserted — at most ``ROP_BULK_MAX_ROWS`` rows. A file past any of them is refused whole.
A cell holding a NUL character or a lone surrogate makes its row invalid.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from hub.edge import printable, text_problem
from hub.errors import PayloadTooLarge, ValidationFailed

PIECE = 64 * 1024
#: the most characters of one CSV record (its lines, quoted line breaks included) or one JSON value
MAX_LINE = 4096
#: the most fields of one CSV record, or keys of one JSON item
MAX_COLUMNS = 16
COLUMNS = ("ref_id", "product_code", "customer_no")
ALIASES = {"sku": "product_code"}
#: the longest value stored per column (longer values make the row invalid)
MAX_LENGTH = {"ref_id": 255, "product_code": 100, "customer_no": 100}


@dataclass
class Spool:
    """An upload copied to a temporary file: ``file`` (binary, rewound), its sha256 and size."""

    file: IO[bytes]
    sha256: str
    size: int

    def rewind(self) -> IO[bytes]:
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        self.file.close()


def spool(stream: IO[bytes], *, max_bytes: int | None = None) -> Spool:
    """Copy ``stream`` to a temporary file in pieces, hashing as it goes.

    :raise PayloadTooLarge: when the stream is longer than ``max_bytes``.
    """
    digest = hashlib.sha256()
    target = tempfile.TemporaryFile(prefix="rop-bulk-")  # noqa: SIM115 - returned open, closed by Spool.close
    size = 0
    try:
        while True:
            piece = stream.read(PIECE)
            if not piece:
                break
            size += len(piece)
            if max_bytes is not None and size > max_bytes:
                raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes", limit=max_bytes)
            digest.update(piece)
            target.write(piece)
    except BaseException:
        target.close()
        raise
    target.seek(0)
    return Spool(file=target, sha256=digest.hexdigest(), size=size)


def _text(binary: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig: spreadsheet programs put a byte-order mark in front of CSV exports
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="", errors="strict")


def normalise_row(raw: dict[str, Any]) -> dict[str, Any]:
    """A parser's row → ``{ref_id, product_code, customer_no, error}`` (strings stripped, too-long values
    refused, product codes in capitals)."""
    row: dict[str, Any] = {}
    for key, value in raw.items():
        if key is None:
            continue
        name = ALIASES.get(str(key).strip().lower(), str(key).strip().lower())
        row[name] = value
    out: dict[str, Any] = {"error": row.get("error") or None}
    problems = []
    for column in COLUMNS:
        value = row.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            out[column] = None
            problems.append(f"{column} is missing")
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            out[column] = None
            problems.append(f"{column} must be a string")
            continue
        text = str(value).strip()
        if why := text_problem(text):
            text = printable(text)
            problems.append(f"{column} {why}")
        if len(text) > MAX_LENGTH[column]:
            out[column] = text[:MAX_LENGTH[column]]
            problems.append(f"{column} is longer than {MAX_LENGTH[column]} characters")
            continue
        # product codes are case-insensitive (the catalog's are capitals): tel10 is TEL10
        out[column] = text.upper() if column == "product_code" else text
    if problems and not out["error"]:
        out["error"] = "; ".join(problems)
    if isinstance(out["error"], str):
        out["error"] = printable(out["error"])[:1000]
    elif out["error"] is not None:
        out["error"] = printable(str(out["error"]))[:1000]
    return out


# -- CSV -------------------------------------------------------------------------------------
class _Records:
    """The lines of a text stream for :mod:`csv`, each read with a bound: a record (its lines
    until the reader yields a row) longer than :data:`MAX_LINE` characters refuses the file
    before it is held in memory."""

    def __init__(self, text: io.TextIOBase):
        self.text = text
        self.pending = 0  # characters of the record being read
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_LINE + 1 - self.pending)
        if not line:
            raise StopIteration
        self.line += 1
        self.pending += len(line)
        if self.pending > MAX_LINE:
            raise ValidationFailed(f"the CSV file has a record longer than {MAX_LINE} characters at line {self.line}",
                                   errors={"file": [f"line {self.line} is longer than {MAX_LINE} characters"]})
        return line


class CsvParser:
    """``ref_id,product_code,customer_no`` with a header line (columns in any order; ``sku`` for product_code)."""

    name = "csv"
    content_types: ClassVar[list[str]] = ["text/csv", "application/csv", "text/plain"]

    def parse(self, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
        text = _text(stream)
        records = _Records(text)
        reader = csv.reader(records)
        try:
            header = next(reader, None)
            if header is None:
                raise ValidationFailed("the CSV file is empty", errors={"file": ["empty"]})
            _columns(header, records.line)
            records.pending = 0
            names = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise ValidationFailed(f"the CSV header lacks {', '.join(missing)}: the file's columns are "
                                       f"{_shown(header)}; a bulk file needs {', '.join(COLUMNS)} "
                                       "(any order; sku for product_code)",
                                       errors={"file": [f"missing column {c}" for c in missing]})
            for fields in reader:
                records.pending = 0
                _columns(fields, records.line)
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank lines are not rows
                row: dict[str, Any] = dict(zip(names, fields))
                if len(fields) != len(names):
                    row["error"] = f"{len(fields)} fields where the header has {len(names)}"
                yield row
        except UnicodeDecodeError:
            raise ValidationFailed("the CSV file is not UTF-8 text", errors={"file": ["not UTF-8"]}) from None
        except csv.Error as exc:
            raise ValidationFailed(f"the CSV file cannot be read at line {reader.line_num}: {exc}",
                                   errors={"file": [str(exc)]}) from None
        finally:
            text.detach()


def _shown(header: list[str], most: int = 10) -> str:
    """The file's own column names, for an error: printable, each cut short, the first ``most``."""
    names = [printable(h.strip())[:40] or "(empty)" for h in header[:most]]
    more = f" and {len(header) - most} more" if len(header) > most else ""
    return ", ".join(names) + more


def _columns(fields: list[str], line: int) -> None:
    if len(fields) > MAX_COLUMNS:
        raise ValidationFailed(f"the CSV file has {len(fields)} fields at line {line}; at most {MAX_COLUMNS}",
                               errors={"file": [f"more than {MAX_COLUMNS} columns"]})


# -- JSON ------------------------------------------------------------------------------------
class _JsonReader:
    """Just enough of an incremental JSON reader to walk ``{"key": value, "items": [v, v, ...]}``
    one value at a time: every value is decoded by :class:`json.JSONDecoder` from a buffer
    that holds at most a few pieces of the file."""

    def __init__(self, stream: IO[bytes]):
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._stream = stream
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._json = json.JSONDecoder()

    def _fill(self) -> bool:
        if self._eof:
            return False
        piece = self._stream.read(PIECE)
        if not piece:
            self._eof = True
            self._buf = self._buf[self._pos:] + self._decoder.decode(b"", final=True)
        else:
            self._buf = self._buf[self._pos:] + self._decoder.decode(piece)
        self._pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in " \t\r\n":
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise ValueError(f"expected {char!r}, found {found or 'the end of the file'!r}")
        self._pos += 1

    def value(self) -> Any:
        """The next value, at most :data:`MAX_LINE` characters long (a longer one is refused
        once that much of it is buffered, never read whole)."""
        self.peek()
        while True:
            try:
                value, end = self._json.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if len(self._buf) - self._pos > MAX_LINE:  # that much in hand, and still no value
                    raise _TooLong(invalid=True) from None
                if self._fill():
                    continue
                raise
            except RecursionError:
                raise ValueError("a value is nested too deep") from None
            if end - self._pos > MAX_LINE:
                raise _TooLong
            if end >= len(self._buf) and not self._eof:  # a number may go on in the next piece
                self._fill()
                continue
            self._pos = end
            return value


class _TooLong(ValueError):
    def __init__(self, invalid: bool = False) -> None:
        super().__init__(f"a value longer than {MAX_LINE} characters" + (", or one that is not JSON" if invalid else ""))


def walk_json(stream: IO[bytes], meta: dict[str, Any] | None = None) -> Iterator[Any]:
    """Yield the elements of the top-level object's ``items`` array one by one; put its
    other keys into ``meta``.

    :raise ValidationFailed: when the text is not such an object.
    """
    reader = _JsonReader(stream)
    try:
        reader.expect("{")
        if reader.peek() == "}":
            return
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")  # noqa: TRY004 - reported as invalid JSON
            reader.expect(":")
            if key == "items":
                reader.expect("[")
                if reader.peek() == "]":
                    reader.expect("]")
                else:
                    while True:
                        yield reader.value()
                        if reader.peek() == ",":
                            reader.expect(",")
                            continue
                        reader.expect("]")
                        break
            else:
                value = reader.value()
                if meta is not None:
                    meta[key] = value
            if reader.peek() == ",":
                reader.expect(",")
                continue
            reader.expect("}")
            break
        if reader.peek() != "":
            raise ValueError("text after the JSON object")
    except _TooLong as exc:
        raise ValidationFailed(f"the JSON body has {exc}", errors={"items": [str(exc)]}) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"the JSON body is not valid: {exc}".split("\n")[0],
                               errors={"items": ["expected {\"items\": [...]}"]}) from None


class JsonParser:
    """``{"items": [{"ref_id", "product_code", "customer_no"}, ...]}`` (other keys are options)."""

    name = "json"
    content_types: ClassVar[list[str]] = ["application/json"]

    def parse(self, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
        for element in walk_json(stream):
            yield _item(element)


def _item(element: Any) -> dict[str, Any]:
    if not isinstance(element, dict):
        return {"error": "an item must be an object {ref_id, product_code, customer_no}"}
    if len(element) > MAX_COLUMNS:
        raise ValidationFailed(f"an item of the JSON body has {len(element)} keys; at most {MAX_COLUMNS}",
                               errors={"items": [f"more than {MAX_COLUMNS} keys"]})
    return element


def scan(table: dict[str, Any], file_format: str, stream: IO[bytes], *, max_rows: int) -> tuple[int, dict[str, Any]]:
    """One pass over a spooled file before anything is stored: its rows, counted (at most
    ``max_rows``), every bound checked; and for JSON the top-level keys other than ``items``.

    :raise ValidationFailed: a file past a bound, or one that cannot be read.
    """
    meta: dict[str, Any] = {}
    if file_format == "json":
        rows: Generator[Any, None, None] = (_item(element) for element in walk_json(stream, meta))
    else:
        rows = parse_rows(table, file_format, stream)
    count = 0
    try:
        for _ in rows:
            count += 1
            if count > max_rows:
                raise ValidationFailed(f"a bulk file may have at most {max_rows} rows",
                                       errors={"file": ["too many rows"]})
    finally:
        rows.close()  # now, while the file is open (a parser's clean-up may need it)
    return count, meta


# -- the table -------------------------------------------------------------------------------
BUILTIN_PARSERS: tuple[Any, ...] = (CsvParser(), JsonParser())


def _attr(parser: Any, name: str, default: Any = None) -> Any:
    return parser.get(name, default) if isinstance(parser, dict) else getattr(parser, name, default)


def parser_table(host: Any = None) -> dict[str, Any]:
    """Formats by name: the built-in ones, then those of the ``register_bulk_parsers`` hook."""
    table: dict[str, Any] = {p.name: p for p in BUILTIN_PARSERS}
    if host is not None:
        for parsers in host.hook.register_bulk_parsers():
            for parser in parsers or []:
                if _attr(parser, "name") and callable(_attr(parser, "parse")):
                    table[str(_attr(parser, "name"))] = parser
    return table


def format_for(table: dict[str, Any], *, content_type: str | None = None, file_name: str | None = None,
               requested: str | None = None) -> str:
    """Choose a format: the one asked for, else by the file name's extension, else by content type.

    :raise ValidationFailed: when none fits.
    """
    if requested:
        if requested not in table:
            raise ValidationFailed(f"unknown format {requested!r}; known: {', '.join(sorted(table))}",
                                   errors={"format": ["unknown"]})
        return requested
    if file_name and "." in file_name:
        extension = file_name.rsplit(".", 1)[1].lower()
        if extension in table:
            return extension
    media = (content_type or "").split(";")[0].strip().lower()
    for name, parser in table.items():
        if media and media in (_attr(parser, "content_types") or []):
            return name
    raise ValidationFailed("cannot tell the file's format: send text/csv or application/json, name the file "
                           ".csv/.json, or give ?format=", errors={"format": ["unknown"]})


def parse_rows(table: dict[str, Any], file_format: str, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Normalised rows of ``stream`` in ``file_format``."""
    for raw in _attr(table[file_format], "parse")(stream):
        yield normalise_row(raw if isinstance(raw, dict) else {"error": "the parser yielded a non-row"})
