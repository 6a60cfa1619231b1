"""Rows of user-supplied JSON-lines and CSV files, each with the line a user's editor shows.

Manifests, training data files and human-label files are validated whole before anything is stored, and every problem is
reported with its line number; both read their rows here so that they number lines alike.

A row with a NUL character (U+0000) in any key or value, nested ones included, is a problem here:
no text a user means has one, and PostgreSQL cannot store it in text or JSONB (it would fail the
whole insert, long after validation said the file was fine).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

Row = tuple[int, dict[str, Any] | str]
"""(line number, the row as a dict, or the reason the line is not a row)."""
ROW_FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SHOWN_PROBLEMS = 3
NUL_PROBLEM = "contains a NUL character (\\u0000), which cannot be stored; remove it"


def nul_field(value: Any, where: str = "") -> str | None:
    """The field (`meta.speaker`, say) of the first NUL character in `value`, or None if it has none."""
    if isinstance(value, str):
        return where or "the row" if "\x00" in value else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return f"a key of {where or 'the row'}"
            items.append((f"{where}.{key}" if where else str(key), item))
    elif isinstance(value, list):
        items = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    for field, item in items:
        found = nul_field(item, field)
        if found is not None:
            return found
    return None


def _checked(number: int, row: dict[str, Any]) -> Row:
    field = nul_field(row)
    return (number, f"{field} {NUL_PROBLEM}") if field is not None else (number, row)


def jsonl_rows(text: str) -> Iterator[Row]:
    """One JSON object per line; blank lines are skipped.

    Lines are split at "\\n" only, as editors number them (`splitlines` would also split at the
    U+2028 a JSON string may hold raw).
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as error:
            yield number, f"not valid JSON ({error})"
            continue
        yield _checked(number, row) if isinstance(row, dict) else (number, "not a JSON object")


def csv_rows(text: str) -> Iterator[Row]:
    """Rows under a header row (names stripped), numbered by the line each row starts on.

    Blank rows are skipped; a row with the wrong number of cells is a problem, not a short row; a
    CSV syntax error ends the file, since nothing after it can be trusted to line up.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        yield 1, f"unreadable CSV header ({error})"
        return
    columns = [name.strip() for name in header]
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, f"unreadable CSV ({error})"
            return
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            yield line, f"{len(cells)} cells, but the header has {len(columns)} columns"
            continue
        yield _checked(line, dict(zip(columns, cells, strict=True)))


def csv_header(text: str) -> list[str]:
    """The column names of a CSV file (stripped, as `csv_rows` strips them); [] if unreadable."""
    try:
        return [name.strip() for name in next(csv.reader(io.StringIO(text, newline="")), [])]
    except csv.Error:
        return []  # `csv_rows` reports it


def manifest_csv_rows(text: str) -> Iterator[Row]:
    """CSV rows of a manifest-like file (bulk manifests, training data files): without their empty cells
    (an empty optional field is an absent one), and `meta` read as the JSON object its text holds."""
    for line, parsed in csv_rows(text):
        if isinstance(parsed, str):
            yield line, parsed
            continue
        row: dict[str, Any] = {name: cell for name, cell in parsed.items() if cell != ""}
        if "meta" in row:
            try:
                row["meta"] = json.loads(row["meta"])
            except (ValueError, RecursionError):
                yield line, 'meta is not valid JSON (write a JSON object, e.g. {"speaker": "s1"})'
                continue
            if (field := nul_field(row["meta"], "meta")) is not None:  # escaped in the JSON text
                yield line, f"{field} {NUL_PROBLEM}"
                continue
        yield line, row


def file_rows(path: Path) -> Iterator[Row]:
    """The rows of a JSON-lines (.jsonl, .ndjson) or CSV file (by its suffix); a file that cannot be
    read as one (another suffix, unreadable, not UTF-8) is a single problem on line 0."""
    fmt = ROW_FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        yield 0, "unknown format: name the file .jsonl (JSON lines) or .csv"
        return
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        yield 0, f"cannot read the file: {error.strerror}"
        return
    except UnicodeDecodeError as error:
        yield 0, f"not UTF-8 text (byte {error.start})"
        return
    yield from jsonl_rows(text) if fmt == "jsonl" else csv_rows(text)


def problems_message(what: str, path: Path, problems: Sequence[tuple[int, str]]) -> str:
    """`<what> file NAME has N problem(s): line L: ...` with the first few problems."""
    shown = "; ".join(f"line {line}: {message}" for line, message in problems[:SHOWN_PROBLEMS])
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    return f"{what} file {path.name} has {len(problems)} problem(s): {shown}{more}"
