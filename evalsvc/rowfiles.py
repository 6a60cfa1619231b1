"""Rows of user-supplied JSON-lines and CSV files, each with the line a user's editor shows.

Manifests and human-label files are validated whole before anything is stored, and every problem is
reported with its line number; both read their rows here so that they number lines alike.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

Row = tuple[int, dict[str, Any] | str]
"""(line number, the row as a dict, or the reason the line is not a row)."""


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
        yield number, row if isinstance(row, dict) else "not a JSON object"


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
        yield line, dict(zip(columns, cells, strict=True))
