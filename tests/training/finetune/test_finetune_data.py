"""Data files are checked whole before anything trains: every problem, each with its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsvc.audio import AudioLimits
from evalsvc.cli import main
from evalsvc.errors import InvalidParameter, TrainingDataInvalid
from evalsvc.training.finetune import DataFileSource
from evalsvc.training.finetune.datafile import read_data_file
from evalsvc.training.finetune.plan import TrainConfig, epoch_order, plan_stages, split_validation, windows
from evalsvc.training.finetune.sources import read_sources
from tests.training.finetune.helpers import Dataset, assessment, tone_file, write_jsonl

LIMITS = AudioLimits()


def problems_of(path: Path, roots: list[Path] | None = None) -> list[tuple[int, str]]:
    data = read_data_file(path, roots or [path.parent], LIMITS)
    return [(problem.line, problem.message) for problem in data.problems]


def test_a_valid_file_gives_its_examples_with_resolved_clips(dataset: Dataset) -> None:
    data = read_data_file(dataset.directory / "all.jsonl", [dataset.directory], LIMITS)
    assert data.problems == [] and data.rows == 24 and len(data.examples) == 24
    judge = next(e for e in data.examples if e.task == "assessment")
    assert judge.clips == (dataset.directory / "q0.wav", dataset.directory / "r0.wav")
    assert judge.target == assessment(0) and judge.source.endswith("all.jsonl:3")


def test_every_problem_of_a_jsonl_file_is_reported_with_its_line(tmp_path: Path) -> None:
    tone_file(tmp_path / "q.wav", 0.5, 200.0)
    (tmp_path / "text.wav").write_text("not audio")
    path = tmp_path / "data.jsonl"
    lines = [
        {"id": "a", "task": "ser", "audio": "q.wav", "target": "sad"},
        {"id": "a", "task": "ser", "audio": "q.wav", "target": "calm"},
        "not json",
        {"id": "b", "task": "sing", "audio": "q.wav", "target": "x"},
        {"id": "c", "task": "caption", "query_audio": "q.wav", "target": "x"},
        {"id": "d", "task": "ser", "audio": "../outside.wav", "target": "sad\nhappy"},
        {
            "id": "e",
            "task": "assessment",
            "query_audio": "q.wav",
            "response_audio": "q.wav",
            "target": "Kind.",
        },
        {"id": "f", "task": "ser", "audio": "text.wav", "target": "sad", "speaker": "s1"},
        {
            "id": "g",
            "task": "assessment",
            "query_audio": "q.wav",
            "response_audio": "gone.wav",
            "target": assessment(1),
        },
        {"task": "ser", "audio": "q.wav", "target": "  "},
    ]
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    found = problems_of(path)
    undecodable = next(
        i for i, (line, message) in enumerate(found) if line == 8 and message.startswith("audio:")
    )
    assert found.pop(undecodable)[1].startswith(
        "audio: clip 'text.wav' is not audio in a format evalsvc reads"
    )
    assert found == [
        (2, "duplicate id 'a' (first on line 1)"),
        (3, "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        (4, "task 'sing' is not one of ser, caption, assessment"),
        (5, "a caption row takes audio, not query_audio"),
        (5, "missing audio (a caption row takes audio)"),
        (6, "an ser target is one emotion label (one line, at most 64 characters)"),
        (6, "audio '../outside.wav': outside the data roots"),
        (
            7,
            "an assessment target must end in the judge's score line: the assessment does not end with a "
            "'SCORES: ...' line",
        ),
        (8, "unknown field(s) 'speaker' (put extra information in meta)"),
        (9, "response_audio 'gone.wav': file not found"),
        (10, "missing id"),
        (10, "target must be a non-empty string"),
    ]


def test_a_csv_header_with_a_misspelt_column_is_reported_once_with_a_suggestion(tmp_path: Path) -> None:
    tone_file(tmp_path / "q.wav", 0.5, 200.0)
    path = tmp_path / "data.csv"
    path.write_text('id,task,audoi,target,meta\ns1,ser,q.wav,sad,{"speaker": 1}\ns2,ser,q.wav,calm,[1]\n')
    assert problems_of(path) == [
        (1, "unknown column(s) 'audoi' (did you mean 'audio'?) in the header"),
        (2, "missing audio (a ser row takes audio)"),
        (3, "meta must be a JSON object"),
        (3, "missing audio (a ser row takes audio)"),
    ]


def test_ids_repeated_across_files_and_every_file_problem_are_refused_together(
    dataset: Dataset, tmp_path: Path
) -> None:
    other = write_jsonl(
        tmp_path / "more.jsonl",
        [
            {"id": "ser-0", "task": "ser", "audio": str(dataset.directory / "q1.wav"), "target": "sad"},
            {"id": "x", "task": "ser", "audio": str(dataset.directory / "q1.wav")},
        ],
    )
    sources = [
        DataFileSource(dataset.directory / "all.jsonl", [dataset.directory]),
        DataFileSource(other, [dataset.directory]),
    ]
    with pytest.raises(TrainingDataInvalid) as raised:
        read_sources(sources, LIMITS)
    assert raised.value.located == [
        (str(other), 2, "missing target"),
        (str(other), 1, f"duplicate id 'ser-0' (first at {dataset.directory / 'all.jsonl'}:1)"),
    ]
    assert raised.value.summary == f"1 of 2 row(s) of {other} are invalid (1 problem); nothing was trained"


def test_a_bad_data_file_stops_the_command_before_anything_is_loaded_or_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tone_file(tmp_path / "q.wav", 0.5, 200.0)
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "ok", "task": "ser", "audio": "q.wav", "target": "sad"},
            {
                "id": "bad",
                "task": "assessment",
                "query_audio": "q.wav",
                "response_audio": "q.wav",
                "target": "Kind.",
            },
            {"id": "worse", "task": "caption", "audio": "missing.wav", "target": "Calm."},
        ],
    )
    out = tmp_path / "adapter"
    # a model that does not exist: reaching the loader would fail differently (exit 3)
    code = main(
        ["train", "adapter", "--data", str(path), "--out", str(out), "--model", str(tmp_path / "none")]
    )
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:2: an assessment target must end in the judge's score line: the assessment does not end with a "
        "'SCORES: ...' line",
        f"{path}:3: audio 'missing.wav': file not found",
        f"error [training_data_invalid]: 2 of 3 row(s) of {path} are invalid (2 problems); nothing was trained",
    ]
    assert not out.exists()


def test_stages_follow_the_order_given_or_the_papers() -> None:
    present = {"ser", "caption", "assessment"}
    assert [s.tasks for s in plan_stages([], False, present)] == [("ser",), ("caption",), ("assessment",)]
    assert [s.tasks for s in plan_stages(["assessment", "ser"], False, present)] == [
        ("assessment",),
        ("ser",),
    ]
    assert [s.tasks for s in plan_stages([], True, {"assessment", "ser"})] == [("ser", "assessment")]
    with pytest.raises(InvalidParameter, match="no training examples of task"):
        plan_stages(["caption"], False, {"ser"})
    with pytest.raises(InvalidParameter, match="given twice: ser"):
        plan_stages(["ser", "ser"], False, present)


def test_the_split_and_the_data_order_depend_on_the_seed_only(dataset: Dataset) -> None:
    examples = read_data_file(dataset.directory / "all.jsonl", [dataset.directory], LIMITS).examples
    train, validation = split_validation(examples, 0.25, seed=3)
    assert sorted(e.task for e in validation) == ["assessment"] * 2 + ["caption"] * 2 + ["ser"] * 2
    assert {e.id for e in train}.isdisjoint(e.id for e in validation)
    assert split_validation(list(reversed(examples)), 0.25, seed=3) == (train, validation)
    assert split_validation(examples, 0.25, seed=4)[1] != validation
    everything, none = split_validation(examples, 0.0, seed=3)
    assert none == [] and {e.id for e in everything} == {e.id for e in examples}
    assert epoch_order(10, 0, 1, 2) == epoch_order(10, 0, 1, 2) != epoch_order(10, 0, 1, 3)
    assert sorted(epoch_order(10, 0, 1, 2)) == list(range(10))
    steps = windows(list(range(7)), TrainConfig(batch_size=2, gradient_accumulation=3))
    assert steps == [[[0, 1], [2, 3], [4, 5]], [[6]]]
