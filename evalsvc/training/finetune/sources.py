"""Where training examples come from: the interface, and data files behind it.

An `ExampleSource` gives checked `Example`s (every problem of its own, with where it is, or none) and
a description that training.json records: enough to tell later which data made an adapter, and for
`--resume` to refuse other data. Two kinds:

    DataFileSource        a JSON-lines or CSV data file (every task)
    RunAssessmentSource   the assessments of a judged run in the store (task `assessment`): a
                          teacher run of the LLM judge (`llm-assessment`), or any run judged in
                          assessment mode; each item's query and response audio -> its assessment
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evalsvc.audio import AudioLimits
from evalsvc.engine.prompt import parse_score_line
from evalsvc.engine.types import Scores
from evalsvc.errors import TrainingDataInvalid
from evalsvc.store import Store
from evalsvc.store.item_streams import ItemRow, stream_items
from evalsvc.training.finetune.datafile import DataProblem, Example, decode_clip, read_data_file

_SHOWN = 3


@dataclass
class SourceRead:
    """What a source gave: its valid examples and every problem it found."""

    examples: list[Example]
    problems: list[DataProblem]
    summary: str
    """One line for the error message, e.g. `2 of 40 row(s) of data.jsonl are invalid (3 problems)`."""


class ExampleSource(Protocol):
    def read(self, limits: AudioLimits) -> SourceRead:
        """Every example, each checked (its audio decoded); problems are returned, not raised."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON provenance (kind, where, content hash, counts): recorded in training.json and compared
        on `--resume`; call after `read`."""
        ...


class DataFileSource:
    """A JSON-lines or CSV data file (`evalsvc.training.finetune.datafile`)."""

    def __init__(self, path: Path, roots: Sequence[Path]) -> None:
        self.path = path
        self.roots = list(roots)
        self._sha256 = ""
        self._rows = 0

    def read(self, limits: AudioLimits) -> SourceRead:
        data = read_data_file(self.path, self.roots, limits)
        self._sha256, self._rows = data.sha256, data.rows
        return SourceRead(data.examples, data.problems, data.summary())

    def describe(self) -> dict[str, Any]:
        return {"kind": "file", "path": str(self.path.resolve()), "sha256": self._sha256, "rows": self._rows}


@dataclass
class _RunTally:
    """What a run's items gave: usable ones, and why the others were passed over."""

    items: int = 0
    passed_over: dict[str, int] = field(
        default_factory=lambda: {"no_result": 0, "no_assessment": 0, "no_score_line": 0}
    )
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)


class RunAssessmentSource:
    """The assessments of a judged run: one `assessment` example per item whose result has an
    assessment ending in a valid score line (what the judge must learn to write).

    Items without one (failed or pending, judged in scores mode, an assessment the teacher ended
    without a readable score line) are passed over and counted, not problems: a teacher run of
    thousands always has a few. A run with no usable item at all is a problem. So is an item whose
    audio no longer decodes, or decodes to other audio than the run judged (its sha256 differs): the
    assessment would teach the model to describe a clip it does not hear.
    """

    def __init__(self, store: Store, run_id: int, roots: Sequence[Path]) -> None:
        self.store = store
        self.run_id = run_id
        self.roots = [root.resolve() for root in roots]
        self.shown = f"run {run_id}"
        self._tally = _RunTally()
        self._examples = 0

    def read(self, limits: AudioLimits) -> SourceRead:
        self._tally = tally = _RunTally()
        examples: list[Example] = []
        problems: list[DataProblem] = []
        with self.store.session() as session:
            for ordinal, item in enumerate(stream_items(session, [self.run_id]), start=1):
                tally.items += 1
                skipped = _unusable(item)
                if skipped is not None:
                    tally.passed_over[skipped] += 1
                    continue
                clip_problems = self._clip_problems(item, limits)
                problems += [DataProblem(self.shown, ordinal, message) for message in clip_problems]
                if clip_problems:
                    continue
                assessment = (item.assessment or "").strip()
                for part in (item.item_key, item.query_sha256, item.response_sha256, assessment):
                    tally.digest.update(f"{part}\0".encode())
                clips = (Path(item.query_ref), Path(item.response_ref))
                examples.append(
                    Example(item.item_key, "assessment", clips, assessment, f"{self.shown}:{ordinal}")
                )
        self._examples = len(examples)
        if not examples and not problems:
            problems.append(DataProblem(self.shown, 0, self._nothing_usable()))
        summary = (
            f"{len(problems)} problem(s) in the {tally.items} item(s) of {self.shown}"
            if examples or tally.items
            else f"{self.shown} has no items"
        )
        return SourceRead(examples, problems, summary)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "run",
            "run_id": self.run_id,
            "items": self._tally.items,
            "examples": self._examples,
            "passed_over": dict(self._tally.passed_over),
            "sha256": self._tally.digest.hexdigest(),
        }

    def _clip_problems(self, item: ItemRow, limits: AudioLimits) -> list[str]:
        found = []
        for name, ref, judged in (
            ("query", item.query_ref, item.query_sha256),
            ("response", item.response_ref, item.response_sha256),
        ):
            decoded = decode_clip(Path(ref), self.roots, limits)
            if isinstance(decoded, str):
                found.append(f"item {item.item_key!r}: {name} audio: {decoded}")
            elif decoded.sha256 != judged:
                found.append(
                    f"item {item.item_key!r}: {name} audio {ref!r} is not the audio the run judged "
                    "(its content changed since)"
                )
        return found

    def _nothing_usable(self) -> str:
        if self._tally.items == 0:
            return "the run has no items"
        reasons = ", ".join(
            f"{count} {reason.replace('_', ' ')}"
            for reason, count in self._tally.passed_over.items()
            if count
        )
        return (
            f"no item of the run has an assessment ending in a score line ({reasons}); train on a run "
            "judged in assessment mode (`bulk run --mode assessment` or `both`, or the LLM judge's llm-assessment)"
        )


def _unusable(item: ItemRow) -> str | None:
    """Why an item gives no example (a `_RunTally.passed_over` key), or None when it does."""
    if item.query_sha256 is None:
        return "no_result"
    if not item.assessment or not item.assessment.strip():
        return "no_assessment"
    if not isinstance(parse_score_line(item.assessment), Scores):
        return "no_score_line"
    return None


def read_sources(sources: Sequence[ExampleSource], limits: AudioLimits) -> list[Example]:
    """The examples of every source, ids unique across them; raises `TrainingDataInvalid` with every
    problem of every source when there is any (nothing is trained from partly valid data)."""
    examples: list[Example] = []
    problems: list[DataProblem] = []
    summaries: list[str] = []
    first: dict[str, str] = {}
    for source in sources:
        read = source.read(limits)
        problems += read.problems
        if read.problems:
            summaries.append(read.summary)
        for example in read.examples:
            if example.id in first:
                file, _, line = example.source.rpartition(":")
                problems.append(
                    DataProblem(
                        file, int(line), f"duplicate id {example.id!r} (first at {first[example.id]})"
                    )
                )
                continue
            first[example.id] = example.source
            examples.append(example)
    if problems:
        shown = "; ".join(f"{p.file}:{p.line}: {p.message}" for p in problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        head = "; ".join(summaries) or "the data files repeat ids"
        raise TrainingDataInvalid(
            f"{head}: {shown}{more}; nothing was trained",
            [(p.file, p.line, p.message) for p in problems],
            summary=f"{head}; nothing was trained",
        )
    return examples
