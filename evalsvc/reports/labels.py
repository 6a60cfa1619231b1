"""Import human ratings into a label set: `evalsvc labels import FILE --name SET [--run RUN]`.

A labels file is JSON lines or CSV (with a header), one rating per row:

    id      the item key (the manifest's `id`) the rating is for
    NS WA EU ES   the rater's 1-5 scores (case-insensitive names; a dimension may be left out or
            empty, but not all four)
    rater   optional: who rated; unnamed ratings of one id become raters "#1", "#2", ... in file order

Extra columns (comments, timestamps) are ignored. The whole file is checked before anything is
stored, and every problem is reported with its line number, so one pass fixes the file.

With `--run RUN`, every id must be an item of that run, and each label of a scored item also records
the sha256 of the item's query and response audio: the labels then follow the audio into any run that judged it
(`report agreement --match audio`), not only runs whose manifest reuses the ids. Without it labels
match by item key only. See `evalsvc.reports.agreement` for how ratings meet scores.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.orm import Session

from evalsvc.errors import LabelsInvalid
from evalsvc.rowfiles import csv_rows, jsonl_rows
from evalsvc.store import HumanLabelSpec, create_label_set, upsert_labels
from evalsvc.store.report_queries import DIMENSIONS
from evalsvc.store.run_records import item_audio_hashes
from evalsvc.store.scope import get_run

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_MAX_KEY = 200  # run_items.item_key
_MAX_RATER = 100  # human_labels.rater
_SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class LabelImport:
    """What an import stored."""

    label_set: str
    label_set_id: int
    ratings: int
    items: int
    raters: int
    with_audio: int
    """Ratings that carry their item's audio hashes (`--run`, items with a result)."""


def import_labels(
    session: Session,
    path: Path,
    name: str,
    *,
    tenant_id: int | None,
    run_id: int | None = None,
    description: str | None = None,
) -> LabelImport:
    """Check the whole file, then create the label set `name` and store its ratings."""
    labels, problems = parse_labels(_read(path), _format(path))
    if run_id is not None and labels:
        get_run(session, run_id, tenant_id=tenant_id)
        labels, missing = _with_audio(session, run_id, labels)
        problems += missing
    if problems or not labels:
        problems = problems or [(0, "the file has no ratings")]
        _raise(path, problems)
    label_set = create_label_set(session, name, description=description, tenant_id=tenant_id)
    upsert_labels(session, label_set.id, [label for _line, label in labels])
    return LabelImport(
        label_set=label_set.name,
        label_set_id=label_set.id,
        ratings=len(labels),
        items=len({label.item_key for _line, label in labels}),
        raters=len({label.rater for _line, label in labels}),
        with_audio=sum(label.query_sha256 is not None for _line, label in labels),
    )


def parse_labels(text: str, fmt: str) -> tuple[list[tuple[int, HumanLabelSpec]], list[tuple[int, str]]]:
    """The valid ratings with their line numbers, and every problem as (line, message)."""
    labels: list[tuple[int, HumanLabelSpec]] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[tuple[str, str], int] = {}
    unnamed: dict[str, int] = defaultdict(int)
    for line, row in jsonl_rows(text) if fmt == "jsonl" else csv_rows(text):
        if isinstance(row, str):
            problems.append((line, row))
            continue
        row_problems, label = _check_row(row)
        if label is not None and not row_problems:
            if not label.rater:
                unnamed[label.item_key] += 1
                label = replace(label, rater=f"#{unnamed[label.item_key]}")
            key = (label.item_key, label.rater)
            if key in first_line:
                row_problems.append(
                    f"rater {label.rater!r} rated id {label.item_key!r} already (line {first_line[key]})"
                )
            else:
                first_line[key] = line
                labels.append((line, label))
        problems += [(line, message) for message in row_problems]
    return labels, problems


def _check_row(row: dict[str, Any]) -> tuple[list[str], HumanLabelSpec | None]:
    fields = {str(name).strip().lower(): value for name, value in row.items()}
    problems: list[str] = []
    key = fields.get("id")
    if not isinstance(key, str) or not key.strip():
        problems.append("id must be a non-empty string")
    elif len(key) > _MAX_KEY:
        problems.append(f"id is longer than {_MAX_KEY} characters")
    rater = fields.get("rater")
    if rater in (None, ""):
        rater = ""
    elif not isinstance(rater, str) or len(rater) > _MAX_RATER:
        problems.append(f"rater must be a string of at most {_MAX_RATER} characters")
    scores: dict[str, float | None] = {}
    for name in DIMENSIONS:
        value, problem = _score(fields.get(name.lower()))
        if problem:
            problems.append(f"{name} {problem}")
        scores[name.lower()] = value
    if not problems and all(value is None for value in scores.values()):
        problems.append("no score: give at least one of NS, WA, EU, ES")
    if problems:
        return problems, None
    return problems, HumanLabelSpec(item_key=str(key), rater=str(rater), **scores)


def _score(value: Any) -> tuple[float | None, str | None]:
    """A 1-5 rating from a JSON number or a CSV cell; None when left out."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        return None, f"must be a number, not {json.dumps(value)}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"must be a number, not {value!r}"
    if not math.isfinite(number) or not 1.0 <= number <= 5.0:
        return None, f"must lie in 1-5, not {value}"
    return number, None


def _with_audio(
    session: Session, run_id: int, labels: list[tuple[int, HumanLabelSpec]]
) -> tuple[list[tuple[int, HumanLabelSpec]], list[tuple[int, str]]]:
    """The labels with their item's audio hashes from the run; ids the run lacks are problems.

    An item of the run without a result yet (failed, pending) keeps its label without hashes: it
    still matches by item key, and a label for it is no mistake.
    """
    hashes = item_audio_hashes(session, run_id)
    found, problems = [], []
    for line, label in labels:
        if label.item_key not in hashes:
            problems.append((line, f"id {label.item_key!r} is not an item of run {run_id}"))
            continue
        query, response = hashes[label.item_key]
        found.append((line, replace(label, query_sha256=query, response_sha256=response)))
    return found, problems


def _format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        _raise(path, [(0, "unknown format: name the file .jsonl (JSON lines) or .csv")])
    return fmt


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        _raise(path, [(0, f"cannot read the file: {error.strerror}")])
    except UnicodeDecodeError as error:
        _raise(path, [(0, f"not UTF-8 text (byte {error.start})")])


def _raise(path: Path, problems: list[tuple[int, str]]) -> NoReturn:
    shown = "; ".join(f"line {line}: {message}" for line, message in problems[:_SHOWN_PROBLEMS])
    more = f" (and {len(problems) - _SHOWN_PROBLEMS} more)" if len(problems) > _SHOWN_PROBLEMS else ""
    raise LabelsInvalid(f"labels file {path.name} has {len(problems)} problem(s): {shown}{more}", problems)
