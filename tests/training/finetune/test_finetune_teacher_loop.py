"""The loop of issue 16 on the tiny model, run as a user runs it: through the `evalsvc` command line.

    teacher runs (training pairs, held-out pairs)   judged by the teacher: assessments + 4 scores
    train adapter --from-run TEACHER                the adapter learns to write the teacher's assessments
    train heads --teacher TEACHER                   heads fitted on the teacher's scores, on that adapter
    bulk run HELD-OUT --mode both                   the new judge (adapter + heads) scores held-out pairs
    report agreement / text-agreement --teacher     how close the new judge is to the teacher

The teacher's runs are written through the store's own functions, as a judged run leaves them (an
`llm-assessment` run of the LLM judge is stored the same way: assessment text ending in the SCORES
line, and the four scores). Everything after that is the CLI, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.artifacts import resolve_artifacts
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from evalsvc.store import RunItemSpec, Store
from tests.store.factories import SeededItem, seed_run
from tests.training.finetune.helpers import EMOTIONS, tone_file

TRAIN_PAIRS = 16
HELD_OUT_PAIRS = 8


def teacher_assessment(index: int, scores: tuple[float, float, float, float]) -> str:
    ns, wa, eu, es = scores
    return (
        f"The user sounds {EMOTIONS[index % 4]} and wants to be heard. The response is "
        f"{'warm and specific' if es >= 3 else 'flat and generic'}.\n"
        f"SCORES: NS={ns:g} WA={wa:g} EU={eu:g} ES={es:g}"
    )


def teacher_scores(index: int) -> tuple[float, float, float, float]:
    return (float(1 + index % 5), float(5 - index % 4), float(2 + index % 3), float(1 + (index * 3) % 5))


def pair_files(directory: Path, index: int) -> tuple[Path, Path]:
    query = directory / tone_file(directory / f"q{index}.wav", 0.4 + 0.05 * index, 150.0 + 30 * index)
    response = directory / tone_file(directory / f"r{index}.wav", 0.5 + 0.04 * index, 320.0 + 20 * index)
    return query, response


def teacher_run(store: Store, directory: Path, indices: range, name: str) -> int:
    """A run the teacher judged: every item with an assessment and its four scores."""
    limits = AudioLimits()
    items = []
    for index in indices:
        query, response = pair_files(directory, index)
        scores = teacher_scores(index)
        items.append(
            SeededItem(
                RunItemSpec(
                    f"pair-{index}",
                    str(query),
                    str(response),
                    system="sys",
                    dataset="synthetic",
                    emotion=EMOTIONS[index % 4],
                ),
                decode_audio(query, limits).sha256,
                decode_audio(response, limits).sha256,
                scores,
                assessment=teacher_assessment(index, scores),
            )
        )
    return seed_run(store, items, mode="assessment", name=name, judge="teacher")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loop_store(store: Store) -> tuple[str, Store]:
    """The store tests' database, SQLite and PostgreSQL, by URL (for the CLI) and opened."""
    return store.url.render_as_string(hide_password=False), store


def test_teacher_run_to_served_judge_to_agreement(
    loop_store: tuple[str, Store],
    sharp_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, store = loop_store
    audio = tmp_path / "audio"
    audio.mkdir()
    teacher = teacher_run(store, audio, range(TRAIN_PAIRS), "teacher-train")
    held_teacher = teacher_run(store, audio, range(TRAIN_PAIRS, TRAIN_PAIRS + HELD_OUT_PAIRS), "teacher-held")
    store.dispose()
    monkeypatch.setenv("EVALSVC_MAX_NEW_TOKENS", "16")
    model = ("--model", str(sharp_model), "--device", "cpu", "--data-dir", str(tmp_path / "data"))
    db = ("--database-url", url)

    adapter = tmp_path / "adapter"
    code, out, err = cli(
        capsys, "train", "adapter", "--from-run", str(teacher), "--out", str(adapter),
        "--data-root", str(audio), "--epochs", "2", "--gradient-accumulation", "2",
        "--validation-fraction", "0.25", "--no-progress", *model, *db,
    )  # fmt: skip
    assert code == EXIT_OK, err
    (stage,) = json.loads(out)["stages"]
    assert stage["tasks"] == ["assessment"]
    assert stage["best_validation_loss"] < stage["initial_validation_loss"]  # it learnt from the teacher
    training = json.loads((adapter / "training.json").read_text())
    (source,) = training["data"]["sources"]
    assert source["kind"] == "run" and source["run_id"] == teacher and source["examples"] == TRAIN_PAIRS
    assert training["data"]["examples"] == {"assessment": {"train": 12, "validation": 4}}

    heads = tmp_path / "heads"
    code, out, err = cli(
        capsys, "train", "heads", "--teacher", str(teacher), "--out", str(heads),
        "--adapter", str(adapter), "--split-seed", "1", *model, *db,
    )  # fmt: skip
    assert code == EXIT_OK, err
    fitted = json.loads(out)
    assert fitted["items"] == TRAIN_PAIRS and fitted["dropped"] == {"unscored": 0}
    assert json.loads((heads / "metrics.json").read_text())["provenance"]["teacher_run"] == teacher

    manifest = tmp_path / "held-out.jsonl"
    manifest.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"pair-{index}",
                    "query_audio": f"audio/q{index}.wav",
                    "response_audio": f"audio/r{index}.wav",
                    "system": "sys",
                    "dataset": "synthetic",
                }
            )
            + "\n"
            for index in range(TRAIN_PAIRS, TRAIN_PAIRS + HELD_OUT_PAIRS)
        )
    )
    code, out, err = cli(
        capsys, "bulk", "run", str(manifest), "--name", "new-judge", "--mode", "both",
        "--no-progress",
        "--adapter", str(adapter), "--heads", str(heads), *model, *db,
    )  # fmt: skip
    assert code == EXIT_OK, err
    judged = json.loads(out)["id"]

    code, out, err = cli(
        capsys, "report", "agreement", str(judged), "--teacher", str(held_teacher), "--json", *db
    )
    assert code == EXIT_OK, err
    agreement = json.loads(out)
    assert agreement["label_set"] == f"run {held_teacher}"
    assert agreement["matched"] == HELD_OUT_PAIRS and agreement["labelled"] == HELD_OUT_PAIRS
    overall = next(row for row in agreement["rows"] if row["dimension"] == "overall")
    assert overall["utterance"]["n"] == 4 * HELD_OUT_PAIRS and overall["utterance"]["mse"] is not None

    code, out, err = cli(
        capsys, "report", "text-agreement", str(judged), "--teacher", str(held_teacher), "--json", *db
    )
    assert code == EXIT_OK, err
    texts = json.loads(out)
    assert texts["matched"] == HELD_OUT_PAIRS
    assert set(texts["text"]["scores"]) >= {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    assert set(texts["text"]["unavailable"]) >= {"SPICE", "SPIDEr", "FENSE"}
    assert "unavailable" in texts["ser"]  # the new judge (EmpathyEval) labels no clip

    code, out, err = cli(capsys, "report", "text-agreement", str(judged), "--teacher", str(held_teacher), *db)
    assert code == EXIT_OK, err
    assert f"Text agreement of run {judged} with run {held_teacher}: {HELD_OUT_PAIRS} items matched" in out
    assert "SPICE" in out and "stanford" in out.lower()


def _run_with(store: Store, directory: Path, items: list[dict[str, Any]]) -> int:
    limits = AudioLimits()
    seeded = []
    for index, item in enumerate(items):
        query, response = pair_files(directory, index)
        seeded.append(
            SeededItem(
                RunItemSpec(f"pair-{index}", str(query), str(response), system="sys"),
                decode_audio(query, limits).sha256,
                decode_audio(response, limits).sha256,
                item.get("scores"),
                assessment=item.get("assessment"),
                error=item.get("error"),
                result_error=item.get("result_error"),
            )
        )
    return seed_run(store, seeded, mode="assessment", name="teacher")


def test_a_run_without_usable_assessments_is_refused_before_training(
    loop_store: tuple[str, Store], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = loop_store
    run_id = _run_with(
        store,
        tmp_path,
        [
            {"error": "audio_unreadable"},
            {"scores": (3.0, 3.0, 3.0, 3.0)},  # judged in scores mode: no assessment
            {"assessment": "Warm, but no verdict.", "result_error": "score_line_missing"},
        ],
    )
    out_dir = tmp_path / "adapter"
    code, _, err = cli(
        capsys, "train", "adapter", "--from-run", str(run_id), "--out", str(out_dir),
        "--model", "tiny", "--database-url", url,
    )  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert (
        f"run {run_id}:0: no item of the run has an assessment ending in a score line (1 no result, "
        "1 no assessment, 1 no score line)"
    ) in err
    assert "error [training_data_invalid]" in err and "nothing was trained" in err
    assert not out_dir.exists()


def test_a_run_whose_audio_changed_is_refused_with_the_item(
    loop_store: tuple[str, Store], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = loop_store
    scores = (4.0, 4.0, 4.0, 4.0)
    run_id = _run_with(
        store, tmp_path, [{"scores": scores, "assessment": teacher_assessment(i, scores)} for i in range(3)]
    )
    tone_file(tmp_path / "r1.wav", 1.3, 500.0)  # the second item's response, rewritten since
    (tmp_path / "q2.wav").unlink()
    code, _, err = cli(
        capsys, "train", "adapter", "--from-run", str(run_id), "--out", str(tmp_path / "adapter"),
        "--model", "tiny", "--data-root", str(tmp_path), "--database-url", url,
    )  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert f"run {run_id}:2: item 'pair-1': response audio" in err
    assert "is not the audio the run judged" in err
    assert f"run {run_id}:3: item 'pair-2': query audio: cannot read clip 'q2.wav'" in err


def test_train_heads_from_a_teacher_needs_enough_scored_items(
    loop_store: tuple[str, Store], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = loop_store
    run_id = _run_with(store, tmp_path, [{"scores": (2.0, 3.0, 4.0, 5.0)}, {"error": "audio_unreadable"}])
    code, _, err = cli(
        capsys, "train", "heads", "--teacher", str(run_id), "--out", str(tmp_path / "heads"),
        "--model", "tiny", "--database-url", url,
    )  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert f"teacher run {run_id} gives 1 usable pairs (left out: {{'unscored': 1}})" in err
    code, _, err = cli(
        capsys, "train", "heads", "--teacher", "999", "--out", str(tmp_path / "heads"),
        "--model", "tiny", "--database-url", url,
    )  # fmt: skip
    assert code == EXIT_USER_ERROR and "no run with id 999" in err


def test_heads_are_fitted_on_a_new_adapter_whatever_heads_are_configured(
    loop_store: tuple[str, Store],
    tiny_paths: TinyModelPaths,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`train heads --adapter NEW` needs no heads: neither the tiny model's own (fitted on its own
    adapter) nor configured ones fitted on another adapter stop it with a fingerprint mismatch."""
    url, store = loop_store
    scores = [teacher_scores(index) for index in range(12)]
    run_id = _run_with(store, tmp_path, [{"scores": value} for value in scores])
    other_adapter = tmp_path / "other-adapter"
    shutil.copytree(tiny_paths.adapter, other_adapter)
    (other_adapter / "training.json").write_text("{}\n")  # another adapter: another backbone
    settings = Settings(model="tiny", adapter=other_adapter, data_dir=tmp_path / "data")
    assert resolve_artifacts(settings).heads is None
    for heads in ([], ["--heads", str(tiny_paths.heads)]):
        out_dir = tmp_path / f"heads{len(heads)}"
        monkeypatch.setenv("EVALSVC_FEATURES_DIR", str(tmp_path / f"features{len(heads)}"))  # no cache hit
        code, out, err = cli(
            capsys, "train", "heads", "--teacher", str(run_id), "--out", str(out_dir), "--model", "tiny",
            "--adapter", str(other_adapter), "--data-dir", str(tmp_path / "data"), "--database-url", url, *heads,
        )  # fmt: skip
        assert code == EXIT_OK, err
        assert json.loads(out)["items"] == 12


def test_data_and_targets_must_be_named_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "train", "adapter", "--out", str(tmp_path / "a"), "--model", "tiny")
    assert code == EXIT_USER_ERROR
    assert "error [invalid_parameter]: give training data: --data FILE or --from-run RUN" in err
    code, _, err = cli(capsys, "train", "heads", "--teacher", "1", "--run", "2", "--out", str(tmp_path / "h"))
    assert code == EXIT_USER_ERROR
    assert "--run goes with --labels; --teacher names the run itself" in err
    with pytest.raises(SystemExit) as exited:
        main(["train", "heads", "--teacher", "1", "--labels", "mos", "--out", str(tmp_path / "h")])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
