"""Bulk manifests: one row per spoken pair, as JSON lines or CSV, checked in full before anything runs.

Fields (CSV: a header row with these column names; `meta` then holds a JSON object as text):

    id               unique within the manifest (the item key of the run)
    query_audio      the user's spoken query: a path under a data root
    response_audio   the system's spoken response: a path under a data root
    system           the model under test
    dataset          where the pair comes from
    query_emotion    optional: the user's emotion label
    response_emotion optional: the emotion the response conveys
    meta             optional: a JSON object, kept with the item
    reference_audio  optional: the ground-truth response, a path under a data root (the A/B judges)
    reference_transcript optional: the ground-truth response as text, instead of reference_audio

Relative paths resolve against `base_dir` (the manifest's own directory for a file on disk) or else
against each data root in turn (an uploaded manifest has no directory). Every resolved path, symlinks
and `..` included, must lie inside a data root: a manifest cannot make a worker read `/etc/shadow`.

Validation reads the whole manifest and reports every problem with its line number, so a 50,000-row
file is fixed in one pass rather than one error per attempt. A CSV header's own problems (a misspelt
or missing column) are reported once, on line 1, not again on every row; an unknown name comes with
the closest field name ("did you mean 'query_audio'?"). Only cheap checks run here (fields,
duplicates, roots, extension, existence): decoding every clip would cost as much as a run, so a file
that exists but does not decode fails as its item, with its error code, during the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalsvc.audio_paths import AudioPathResolver
from evalsvc.errors import ManifestInvalid
from evalsvc.rowfiles import csv_header, jsonl_rows, manifest_csv_rows
from evalsvc.store import RunItemSpec
from evalsvc.suggest import unknown_names

ManifestFormat = Literal["jsonl", "csv"]
REQUIRED_FIELDS = ("id", "query_audio", "response_audio", "system", "dataset")
OPTIONAL_FIELDS = ("query_emotion", "response_emotion", "meta", "reference_audio", "reference_transcript")
# Column widths of `run_items` (evalsvc.store.models.RunItem).
_MAX_LENGTHS = {"id": 200, "system": 200, "dataset": 200, "query_emotion": 64, "response_emotion": 64}
_FORMATS: dict[str, ManifestFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass(frozen=True)
class ManifestProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ManifestItem:
    """One valid row, its audio paths resolved and vetted."""

    line: int
    id: str
    query_audio: Path
    response_audio: Path
    system: str
    dataset: str
    query_emotion: str | None = None
    response_emotion: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reference_audio: Path | None = None
    reference_transcript: str | None = None

    def to_spec(self) -> RunItemSpec:
        """The run item; `response_emotion` travels in `meta` (the item has one emotion column: the
        user's, which is what reports break scores down by)."""
        meta = dict(self.meta)
        if self.response_emotion is not None:
            meta["response_emotion"] = self.response_emotion
        return RunItemSpec(
            item_key=self.id,
            query_ref=str(self.query_audio),
            response_ref=str(self.response_audio),
            system=self.system,
            dataset=self.dataset,
            emotion=self.query_emotion,
            meta=meta,
            reference_ref=str(self.reference_audio) if self.reference_audio else None,
            reference_text=self.reference_transcript,
        )


@dataclass(frozen=True)
class Manifest:
    items: list[ManifestItem]
    problems: list[ManifestProblem]
    rows: int = 0
    """Rows read (lines that were not blank), valid or not."""

    @property
    def invalid_rows(self) -> int:
        return self.rows - len(self.items)

    def accepted(self, *, skip_invalid: bool) -> list[ManifestItem]:
        """The items to run: all of them, or with `skip_invalid` the valid ones.

        Raises `ManifestInvalid` (listing every problem) when there are problems and they may not be
        skipped, or when no valid item is left.
        """
        if self.problems and (not skip_invalid or not self.items):
            shown = "; ".join(str(problem) for problem in self.problems[:3])
            more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
            hint = "" if self.items else " No valid row is left."
            raise ManifestInvalid(
                f"{self.summary()}: {shown}{more}.{hint}",
                [(problem.line, problem.message) for problem in self.problems],
            )
        return self.items

    def summary(self) -> str:
        """`3 of 40 rows are invalid (5 problems)`: rows and problems counted apart (a row may have
        several problems, and a CSV header problem spoils every row once)."""
        problems = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        return f"{self.invalid_rows} of {self.rows} row(s) of the manifest are invalid ({problems})"


def manifest_format(name: str) -> ManifestFormat:
    """The format a file name implies: .jsonl/.ndjson or .csv."""
    suffix = Path(name).suffix.lower()
    if suffix not in _FORMATS:
        raise ManifestInvalid(
            f"cannot tell the format of {name!r}: name it .jsonl (JSON lines) or .csv",
            [(0, "unknown format")],
        )
    return _FORMATS[suffix]


def read_manifest(path: Path, roots: Sequence[Path]) -> Manifest:
    """Parse and check a manifest file; relative audio paths are relative to its directory."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ManifestInvalid(
            f"cannot read the manifest {path}: {error.strerror}", [(0, "unreadable file")]
        ) from error
    return parse_manifest(data, manifest_format(path.name), roots=roots, base_dir=path.resolve().parent)


def parse_manifest(
    data: bytes, fmt: ManifestFormat, *, roots: Sequence[Path], base_dir: Path | None = None
) -> Manifest:
    """Parse and check manifest bytes; see the module docstring for the rules."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestInvalid(
            f"the manifest is not UTF-8 text (byte {error.start})", [(0, "not UTF-8")]
        ) from None
    resolver = AudioPathResolver(roots, base_dir)
    items: list[ManifestItem] = []
    problems: list[ManifestProblem] = []
    first_line: dict[str, int] = {}
    rows = jsonl_rows(text) if fmt == "jsonl" else manifest_csv_rows(text)
    header = _check_header(csv_header(text), problems) if fmt == "csv" else frozenset()
    count = 0
    for line, row in rows:
        count += 1
        if isinstance(row, str):
            problems.append(ManifestProblem(line, row))
            continue
        row_problems, item = _check_row(line, row, resolver, header)
        key = row.get("id")
        if isinstance(key, str) and key in first_line:
            row_problems.append(f"duplicate id {key!r} (first on line {first_line[key]})")
        elif isinstance(key, str):
            first_line[key] = line
        problems.extend(ManifestProblem(line, message) for message in row_problems)
        if item is not None and not row_problems:
            items.append(item)
    if not items and not problems:
        problems.append(ManifestProblem(0, "the manifest has no rows"))
    return Manifest(items, problems, count)


def _check_header(columns: list[str], problems: list[ManifestProblem]) -> frozenset[str]:
    """Problems of the header itself, reported once on line 1; the names they concern, which the
    rows then do not report again."""
    known = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)
    unknown = [name for name in columns if name not in known]
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if unknown:
        problems.append(
            ManifestProblem(
                1,
                f"unknown column(s) {unknown_names(unknown, known)} in the header "
                "(put extra information in the meta column)",
            )
        )
    if missing and columns:
        problems.append(ManifestProblem(1, f"the header has no column {', '.join(missing)}"))
    return frozenset(unknown) | frozenset(missing)


def _check_row(
    line: int, row: dict[str, Any], resolver: AudioPathResolver, header: frozenset[str]
) -> tuple[list[str], ManifestItem | None]:
    """The row's problems, and its item when it has none. Names in `header` had their problem
    reported on the header line: a row lacking them is invalid, but says nothing more about them."""
    problems: list[str] = []
    missing = [name for name in REQUIRED_FIELDS if row.get(name) in (None, "")]
    reported = [name for name in missing if name not in header]
    if reported:
        problems.append(f"missing {', '.join(reported)}")
    known = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)
    unknown = sorted(set(row) - set(known) - header)
    if unknown:
        problems.append(f"unknown field(s) {unknown_names(unknown, known)} (put extra information in meta)")
    for name in (*REQUIRED_FIELDS, "query_emotion", "response_emotion", "reference_transcript"):
        value = row.get(name)
        if value is None or name in missing or (name in OPTIONAL_FIELDS and value == ""):
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{name} must be a non-empty string")
        elif name in _MAX_LENGTHS and len(value) > _MAX_LENGTHS[name]:
            problems.append(f"{name} is longer than {_MAX_LENGTHS[name]} characters")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        problems.append("meta must be a JSON object")
    paths: dict[str, Path] = {}
    if row.get("reference_audio") and row.get("reference_transcript"):
        problems.append("give reference_audio or reference_transcript, not both")
    for name in ("query_audio", "response_audio", "reference_audio"):
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            resolved = resolver.resolve(value)
            if isinstance(resolved, str):
                problems.append(f"{name} {value!r}: {resolved}")
            else:
                paths[name] = resolved
    if problems or missing or "query_audio" not in paths or "response_audio" not in paths:
        return problems, None
    return problems, ManifestItem(
        line=line,
        id=row["id"],
        query_audio=paths["query_audio"],
        response_audio=paths["response_audio"],
        system=row["system"],
        dataset=row["dataset"],
        query_emotion=row.get("query_emotion"),
        response_emotion=row.get("response_emotion"),
        meta=meta,
        reference_audio=paths.get("reference_audio"),
        reference_transcript=row.get("reference_transcript") or None,
    )


def check_references(items: Sequence[ManifestItem], judges: Sequence[str]) -> None:
    """The A/B judges compare each response with a reference response: every row must carry one
    (audio for `llm-ab+emotion`, whose prompt shows the reference's emotion). Raises `ManifestInvalid`
    naming every row that lacks it, before anything is recorded."""
    problems: list[tuple[int, str]] = []
    for judge in judges:
        if not judge.startswith("llm-ab"):
            continue
        audio_only = judge.endswith("+emotion")
        for item in items:
            if item.reference_audio is None and (audio_only or item.reference_transcript is None):
                wanted = "reference_audio" if audio_only else "reference_audio or reference_transcript"
                problems.append((item.line, f"the judge {judge} needs {wanted}"))
    if problems:
        lines = sorted({line for line, _ in problems})
        shown = ", ".join(str(line) for line in lines[:10]) + (" ..." if len(lines) > 10 else "")
        raise ManifestInvalid(
            f"{len(lines)} row(s) have no reference response for A/B (lines {shown})", problems
        )
