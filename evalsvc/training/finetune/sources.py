"""Where training examples come from: the interface, and data files behind it.

An `ExampleSource` gives checked `Example`s (every problem of its own, with where it is, or none) and
a description that training.json records: enough to tell later which data made an adapter, and for
`--resume` to refuse other data. Data files (`DataFileSource`) are the first kind; the assessments of
a judged run (the LLM judge's teacher run) are meant to be another, written against the same
interface: examples of task `assessment` from the run's items and their assessment texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evalsvc.audio import AudioLimits
from evalsvc.errors import TrainingDataInvalid
from evalsvc.training.finetune.datafile import DataProblem, Example, read_data_file

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
