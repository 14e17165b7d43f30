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
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from hub.errors import ValidationFailed

PIECE = 64 * 1024
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

    :raise ValidationFailed: when the stream is longer than ``max_bytes``.
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
                raise ValidationFailed(f"the file is larger than {max_bytes} bytes")
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
    """A parser's row → ``{ref_id, product_code, customer_no, error}`` (strings stripped, too-long values refused)."""
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
        if len(text) > MAX_LENGTH[column]:
            out[column] = text[:MAX_LENGTH[column]]
            problems.append(f"{column} is longer than {MAX_LENGTH[column]} characters")
            continue
        out[column] = text
    if problems and not out["error"]:
        out["error"] = "; ".join(problems)
    return out


# -- CSV -------------------------------------------------------------------------------------
class CsvParser:
    """``ref_id,product_code,customer_no`` with a header line (columns in any order; ``sku`` for product_code)."""

    name = "csv"
    content_types: ClassVar[list[str]] = ["text/csv", "application/csv", "text/plain"]

    def parse(self, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
        text = _text(stream)
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None:
                raise ValidationFailed("the CSV file is empty", errors={"file": ["empty"]})
            names = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise ValidationFailed(f"the CSV header lacks {', '.join(missing)} (columns: {', '.join(COLUMNS)})",
                                       errors={"file": [f"missing column {c}" for c in missing]})
            for fields in reader:
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
        self.peek()
        while True:
            try:
                value, end = self._json.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if self._fill():
                    continue
                raise
            if end >= len(self._buf) and not self._eof:  # a number may go on in the next piece
                self._fill()
                continue
            self._pos = end
            return value


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
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"the JSON body is not valid: {exc}".split("\n")[0],
                               errors={"items": ["expected {\"items\": [...]}"]}) from None


class JsonParser:
    """``{"items": [{"ref_id", "product_code", "customer_no"}, ...]}`` (other keys are options)."""

    name = "json"
    content_types: ClassVar[list[str]] = ["application/json"]

    def parse(self, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
        for element in walk_json(stream):
            if isinstance(element, dict):
                yield element
            else:
                yield {"error": "an item must be an object {ref_id, product_code, customer_no}"}


def json_options(stream: IO[bytes]) -> dict[str, Any]:
    """The top-level keys other than ``items`` of a JSON body (one pass over the file)."""
    meta: dict[str, Any] = {}
    for _ in walk_json(stream, meta):
        pass
    return meta


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
