"""`train adapter` data files: one example per row, JSON lines or CSV, checked whole before training.

Fields (CSV: a header row with these names; `meta` then holds a JSON object as text):

    id               unique within the file
    task             ser, caption or assessment
    audio            ser, caption: the clip (a path under a data root)
    query_audio      assessment: the user's spoken query
    response_audio   assessment: the system's spoken response
    target           ser: the emotion label; caption: the caption; assessment: the assessment, ending
                     in the judge's `SCORES: NS=.. WA=.. EU=.. ES=..` line (what the judge must write)
    meta             optional: a JSON object, ignored by training

The conventions are the bulk manifest's (`evalsvc.bulk.manifest`), and so are its path rules: paths
resolve against the file's directory and must lie under a data root. Unlike a manifest, every clip
is also decoded here: a training run reads each clip once per epoch for hours, and a clip that cannot
be decoded must stop it before it starts, not in its third epoch. Every problem is reported with its
line and nothing is trained while there is one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsvc.audio import AudioLimits, DecodedAudio, decode_audio, name_under
from evalsvc.audio_paths import AudioPathResolver
from evalsvc.engine.prompt import parse_score_line
from evalsvc.engine.types import Scores
from evalsvc.errors import AudioError
from evalsvc.rowfiles import Row, csv_header, jsonl_rows, manifest_csv_rows
from evalsvc.suggest import unknown_names
from evalsvc.training.finetune.tasks import TASKS, Task

FIELDS = ("id", "task", "audio", "query_audio", "response_audio", "target", "meta")
AUDIO_FIELDS: dict[Task, tuple[str, ...]] = {
    "ser": ("audio",),
    "caption": ("audio",),
    "assessment": ("query_audio", "response_audio"),
}
MAX_LABEL_CHARS = 64
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass(frozen=True)
class Example:
    """One valid row: a task, its clips (vetted paths, in prompt order) and the answer to learn."""

    id: str
    task: Task
    clips: tuple[Path, ...]
    target: str
    source: str
    """Where it came from, for messages: `data.jsonl:12`."""


@dataclass(frozen=True)
class DataProblem:
    file: str
    line: int
    message: str


@dataclass
class DataFile:
    """A data file read and checked: its valid examples, its problems, and what identifies it."""

    path: Path
    examples: list[Example] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    rows: int = 0
    sha256: str = ""

    def summary(self) -> str:
        invalid = self.rows - len(self.examples)
        plural = "s" if len(self.problems) != 1 else ""
        return f"{invalid} of {self.rows} row(s) of {self.path} are invalid ({len(self.problems)} problem{plural})"


def read_data_file(path: Path, roots: Sequence[Path], limits: AudioLimits) -> DataFile:
    """Parse and check a data file; relative audio paths are relative to its directory."""
    result = DataFile(path)
    shown = str(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        result.problems.append(DataProblem(shown, 0, "name the file .jsonl (JSON lines) or .csv"))
        return result
    try:
        data = path.read_bytes()
    except OSError as error:
        result.problems.append(DataProblem(shown, 0, f"cannot read it: {error.strerror}"))
        return result
    result.sha256 = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        result.problems.append(DataProblem(shown, 0, f"not UTF-8 text (byte {error.start})"))
        return result
    checker = _RowChecker(shown, AudioPathResolver(roots, path.resolve().parent), roots, limits)
    rows = jsonl_rows(text) if _FORMATS[suffix] == "jsonl" else _csv_rows(text, checker)
    for line, row in rows:
        result.rows += 1
        if isinstance(row, str):
            checker.problem(line, row)
            continue
        example = checker.check(line, row)
        if example is not None:
            result.examples.append(example)
    result.problems.extend(checker.problems)
    if result.rows == 0 and not result.problems:
        result.problems.append(DataProblem(shown, 0, "the file has no rows"))
    return result


def _csv_rows(text: str, checker: _RowChecker) -> Iterator[Row]:
    """The manifest's CSV rows (an empty cell is an absent field; `meta` is JSON text); a header with
    unknown columns is reported once, on line 1."""
    unknown = [name for name in csv_header(text) if name not in FIELDS]
    if unknown:
        checker.problem(1, f"unknown column(s) {unknown_names(unknown, FIELDS)} in the header")
        checker.reported_columns = frozenset(unknown)
    yield from manifest_csv_rows(text)


class _RowChecker:
    """Checks rows one by one; remembers ids (duplicates) and decoded clips (each file once)."""

    def __init__(
        self, shown: str, resolver: AudioPathResolver, roots: Sequence[Path], limits: AudioLimits
    ) -> None:
        self.shown = shown
        self.resolver = resolver
        self.roots = [root.resolve() for root in roots]
        self.limits = limits
        self.problems: list[DataProblem] = []
        self.reported_columns: frozenset[str] = frozenset()
        self._first_line: dict[str, int] = {}
        self._decoded: dict[Path, str | None] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append(DataProblem(self.shown, line, message))

    def check(self, line: int, row: dict[str, Any]) -> Example | None:
        before = len(self.problems)
        unknown = sorted(set(row) - set(FIELDS) - self.reported_columns)
        if unknown:
            self.problem(
                line, f"unknown field(s) {unknown_names(unknown, FIELDS)} (put extra information in meta)"
            )
        example_id = self._id(line, row.get("id"))
        task = row.get("task")
        if task is None:
            self.problem(line, "missing task")
        elif task not in TASKS:
            self.problem(line, f"task {task!r} is not one of {', '.join(TASKS)}")
            task = None
        if "meta" in row and not isinstance(row["meta"], dict):
            self.problem(line, "meta must be a JSON object")
        target = self._target(line, task, row.get("target"))
        clips = self._clips(line, task, row) if task is not None else None
        if (
            len(self.problems) > before
            or example_id is None
            or task is None
            or target is None
            or clips is None
        ):
            return None
        return Example(example_id, task, clips, target, f"{self.shown}:{line}")

    def _id(self, line: int, value: object) -> str | None:
        if value is None:
            self.problem(line, "missing id")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(line, "id must be a non-empty string")
            return None
        if value in self._first_line:
            self.problem(line, f"duplicate id {value!r} (first on line {self._first_line[value]})")
            return None
        self._first_line[value] = line
        return value

    def _target(self, line: int, task: Task | None, value: object) -> str | None:
        if value is None:
            self.problem(line, "missing target")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(line, "target must be a non-empty string")
            return None
        target = value.strip()
        if task == "ser" and ("\n" in target or len(target) > MAX_LABEL_CHARS):
            self.problem(
                line, f"an ser target is one emotion label (one line, at most {MAX_LABEL_CHARS} characters)"
            )
            return None
        if task == "assessment":
            parsed = parse_score_line(target)
            if not isinstance(parsed, Scores):
                self.problem(
                    line, f"an assessment target must end in the judge's score line: {parsed.message}"
                )
                return None
        return target

    def _clips(self, line: int, task: Task, row: dict[str, Any]) -> tuple[Path, ...] | None:
        wanted = AUDIO_FIELDS[task]
        stray = [
            name for name in ("audio", "query_audio", "response_audio") if name not in wanted and name in row
        ]
        if stray:
            self.problem(line, f"a {task} row takes {' and '.join(wanted)}, not {', '.join(stray)}")
        clips: list[Path] = []
        for name in wanted:
            value = row.get(name)
            if value is None:
                self.problem(line, f"missing {name} (a {task} row takes {' and '.join(wanted)})")
            elif not isinstance(value, str) or not value.strip():
                self.problem(line, f"{name} must be a non-empty string")
            else:
                resolved = self.resolver.resolve(value)
                if isinstance(resolved, str):
                    self.problem(line, f"{name} {value!r}: {resolved}")
                elif (undecodable := self._decode(resolved)) is not None:
                    self.problem(line, f"{name}: {undecodable}")
                else:
                    clips.append(resolved)
        return tuple(clips) if len(clips) == len(wanted) and not stray else None

    def _decode(self, path: Path) -> str | None:
        if path not in self._decoded:
            decoded = decode_clip(path, self.roots, self.limits)
            self._decoded[path] = decoded if isinstance(decoded, str) else None
        return self._decoded[path]


def decode_clip(path: Path, roots: Sequence[Path], limits: AudioLimits) -> DecodedAudio | str:
    """The clip, or why it cannot be trained on (`message [code]`, named relative to its root)."""
    try:
        return decode_audio(path, limits, name=name_under(path, roots))
    except AudioError as error:
        return f"{error.message} [{error.code}]"
