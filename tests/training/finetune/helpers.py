"""A small training data set written to disk: tones as clips, 8 examples per task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

PER_TASK = 8
EMOTIONS = ("sad", "happy", "angry", "calm")


@dataclass(frozen=True)
class Dataset:
    directory: Path
    rows: list[dict[str, Any]]

    def file(self, name: str, *tasks: str) -> Path:
        """A JSON-lines file with the rows of `tasks` (all tasks when none is named)."""
        path = self.directory / name
        write_jsonl(path, [row for row in self.rows if not tasks or row["task"] in tasks])
        return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tone_file(path: Path, seconds: float, frequency: float) -> str:
    t = np.arange(int(16_000 * seconds)) / 16_000
    soundfile.write(path, (0.1 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 16_000)
    return path.name


def assessment(index: int) -> str:
    return (
        f"The user sounds {EMOTIONS[index % 4]} and needs comfort. The response is warm.\n"
        f"SCORES: NS={1 + index % 5} WA={5 - index % 4} EU=4 ES={2 + index % 3}"
    )


def write_dataset(directory: Path) -> Dataset:
    rows: list[dict[str, Any]] = []
    for i in range(PER_TASK):
        query = tone_file(directory / f"q{i}.wav", 0.5 + 0.07 * i, 180.0 + 40 * i)
        response = tone_file(directory / f"r{i}.wav", 0.6 + 0.05 * i, 300.0 + 25 * i)
        emotion = EMOTIONS[i % 4]
        rows += [
            {"id": f"ser-{i}", "task": "ser", "audio": query, "target": emotion},
            {"id": f"cap-{i}", "task": "caption", "audio": query, "target": f"The speaker sounds {emotion}."},
            {
                "id": f"judge-{i}",
                "task": "assessment",
                "query_audio": query,
                "response_audio": response,
                "target": assessment(i),
            },
        ]
    dataset = Dataset(directory, rows)
    dataset.file("all.jsonl")
    return dataset
