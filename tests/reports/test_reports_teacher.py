"""Agreement with a teacher run: scores (`report agreement --teacher`) and assessment texts (`report
text-agreement --teacher|--references`), on both databases.

Expected scores figures are computed from the written items with the reference implementations;
text metrics are pycocoevalcap's own (checked against its published examples in
tests/reports/test_text_metrics.py), so here the tests check which texts meet which: a run compared
with itself scores 1 everywhere, and a reference is found for exactly the keys both sides have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR
from evalsvc.errors import InvalidParameter, NotFound, ReferencesInvalid
from evalsvc.judges.fingerprint import JudgeFingerprint
from evalsvc.judges.provenance import ModelProvenance
from evalsvc.reports import agreement_report
from evalsvc.reports.agreement import teacher_scores
from evalsvc.reports.text_agreement import judged_texts, read_references, teacher_texts, text_agreement_report
from evalsvc.store import RunItemSpec, Store, create_tenant
from evalsvc.store.judging import store_emotion_labels
from tests.reports.builders import sha
from tests.reports.reference import average_ranks, pearson
from tests.store.factories import SeededItem, seed_run

DIMENSIONS = ("NS", "WA", "EU", "ES")
EMOTIONS = ("sad", "happy", "angry")
SENTENCES = (
    "The user sounds sad and needs comfort; the response is warm and acknowledges the loss.",
    "The user is excited about the news; the reply shares the joy but stays short.",
    "The user is angry about the delay; the response apologises and offers a concrete fix.",
    "The user feels lonely; the response listens and asks a gentle question.",
)


EMOTION_MODEL = ModelProvenance("emotion", "transformers", "local:ser", None, "e" * 64, {})
LABELLING_JUDGE = JudgeFingerprint(
    judge="llm-assessment+emotion",
    llm_base_url="http://127.0.0.1:9/v1",
    llm_model="judge-llm",
    prompt_version="llm-judges-v1",
    prompt_language="en",
    decoding={"temperature": 0.0},
    asr=ModelProvenance("asr", "transformers", "local:asr", None, "d" * 64, {}),
    emotion=EMOTION_MODEL,
)
LABELLED = range(5, 40)
"""The items of the +emotion judge's run: the teacher's keys, its manifest's emotions too."""


def predicted(index: int) -> str:
    """The label the +emotion judge's emotion model read in query clip `index`: the manifest's
    (`EMOTIONS[index % 3]`) except for every fourth clip."""
    return EMOTIONS[(index + (index % 4 == 0)) % 3]


def labelled_accuracy() -> float:
    """SER accuracy of the labelled clips' `predicted` labels against the manifest's."""
    right = [predicted(index) == EMOTIONS[index % 3] for index in LABELLED[:-1]]
    return sum(right) / len(right)


@dataclass(frozen=True)
class Seeded:
    tenant: int
    stranger: int
    judged: int
    teacher: int
    other_tenant_teacher: int
    disjoint: int
    labelled: int
    """A run of an +emotion LLM judge whose emotion model labelled the query clips of items 5..38."""
    judged_scores: dict[str, tuple[float, ...]]
    teacher_scores: dict[str, tuple[float, ...]]


def assessment(index: int, scores: tuple[float, ...]) -> str:
    line = " ".join(f"{name}={value:g}" for name, value in zip(DIMENSIONS, scores, strict=True))
    return f"{SENTENCES[index % len(SENTENCES)]}\nSCORES: {line}"


def items(
    keys: range, rng: np.random.Generator, *, emotions: bool
) -> tuple[list[SeededItem], dict[str, tuple[float, ...]]]:
    seeded, scores = [], {}
    for index in keys:
        key = f"item-{index:03d}"
        values = tuple(float(v) for v in rng.integers(1, 6, size=4))
        scores[key] = values
        spec = RunItemSpec(
            key,
            f"q/{key}.wav",
            f"r/{key}.wav",
            system=f"s{index % 4}",
            emotion=EMOTIONS[index % 3] if emotions else None,
        )
        seeded.append(
            SeededItem(spec, sha(f"q{index}"), sha(f"r{index}"), values, assessment=assessment(index, values))  # type: ignore[arg-type]
        )
    return seeded, scores


@pytest.fixture(scope="module")
def seeded(module_store: Store) -> Seeded:
    rng = np.random.default_rng(16)
    with module_store.session() as session:
        tenant, stranger = create_tenant(session, "team-a").id, create_tenant(session, "team-b").id
    judged_items, judged_scores = items(range(0, 30), rng, emotions=False)
    teacher_items, teacher_scores_ = items(range(5, 40), rng, emotions=True)  # 25 keys in common
    judged = seed_run(
        module_store, judged_items, mode="both", name="student", tenant_id=tenant, judge="student"
    )
    teacher = seed_run(
        module_store, teacher_items, mode="assessment", name="teacher", tenant_id=tenant, judge="teacher"
    )
    foreign = seed_run(
        module_store, teacher_items, mode="assessment", name="theirs", tenant_id=stranger, judge="teacher"
    )
    disjoint = seed_run(
        module_store,
        items(range(100, 104), rng, emotions=True)[0],
        mode="both",
        name="other",
        tenant_id=tenant,
    )
    labelled = seed_run(
        module_store,
        items(LABELLED, rng, emotions=True)[0],
        mode="both",
        name="labelled",
        tenant_id=tenant,
        llm_judge=LABELLING_JUDGE.to_dict(),
    )
    with module_store.session() as session:
        labels = {
            sha(f"q{index}"): {
                "label": predicted(index),
                "confidence": 0.9,
                "probabilities": {predicted(index): 0.9},
                "raw_label": predicted(index),
            }
            for index in LABELLED[:-1]
        }
        store_emotion_labels(session, EMOTION_MODEL.to_dict(), labels)
    return Seeded(
        tenant, stranger, judged, teacher, foreign, disjoint, labelled, judged_scores, teacher_scores_
    )


def test_agreement_with_a_teacher_run_matches_the_reference_figures(
    module_store: Store, seeded: Seeded
) -> None:
    common = sorted(set(seeded.judged_scores) & set(seeded.teacher_scores))
    with module_store.session() as session:
        report = agreement_report(teacher_scores(session, seeded.judged, seeded.teacher, seeded.tenant))
    assert (report.label_set, report.matched, report.labelled) == (f"run {seeded.teacher}", 25, 35)
    assert report.mean_raters == 1.0
    for column, name in enumerate(DIMENSIONS):
        student = np.array([seeded.judged_scores[key][column] for key in common])
        teacher = np.array([seeded.teacher_scores[key][column] for key in common])
        row = next(row for row in report.rows if row.dimension == name)
        assert row.utterance.n == 25
        assert row.utterance.lcc == pytest.approx(pearson(student, teacher))
        assert row.utterance.srcc == pytest.approx(pearson(average_ranks(student), average_ranks(teacher)))
        assert row.utterance.mse == pytest.approx(float(np.mean((student - teacher) ** 2)))


def test_agreement_with_a_teacher_by_audio_and_with_itself(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        by_audio = agreement_report(
            teacher_scores(session, seeded.judged, seeded.teacher, seeded.tenant, "audio")
        )
        itself = agreement_report(teacher_scores(session, seeded.teacher, seeded.teacher, seeded.tenant))
    assert by_audio.matched == 25 and by_audio.match == "audio"
    overall = next(row for row in itself.rows if row.dimension == "overall")
    assert (overall.utterance.lcc, overall.utterance.mse, overall.utterance.n) == (
        pytest.approx(1.0),
        0.0,
        4 * 35,
    )


def test_a_teacher_run_of_another_tenant_or_without_common_items_is_refused(
    module_store: Store, seeded: Seeded
) -> None:
    with module_store.session() as session:
        with pytest.raises(NotFound, match=f"no run {seeded.other_tenant_teacher}"):
            teacher_scores(session, seeded.judged, seeded.other_tenant_teacher, seeded.tenant)
        with pytest.raises(
            InvalidParameter,
            match=f"no scored item of run {seeded.disjoint} matches a scored item of teacher run {seeded.teacher} "
            r"by item key \(35 teacher items scored\)",
        ):
            teacher_scores(session, seeded.disjoint, seeded.teacher, seeded.tenant)


def test_text_agreement_with_a_teacher_run(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        report = text_agreement_report(
            judged_texts(session, seeded.judged, seeded.tenant),
            teacher_texts(session, seeded.teacher, seeded.tenant),
        )
        itself = text_agreement_report(
            judged_texts(session, seeded.teacher, None), teacher_texts(session, seeded.teacher, None)
        )
        unlabelled_teacher = text_agreement_report(
            judged_texts(session, seeded.labelled, None), teacher_texts(session, seeded.judged, None)
        )
    assert (report["matched"], report["without_reference"], report["without_hypothesis"]) == (25, 5, 10)
    assert set(report["text"]["unavailable"]) >= {"SPICE", "SPIDEr", "FENSE"}
    assert "stanford" in report["text"]["unavailable"]["SPICE"].lower()
    assert report["ser"]["unavailable"].startswith(
        f"the model of run {seeded.judged} produced no emotion labels"
    )
    assert unlabelled_teacher["ser"] == {
        "unavailable": f"no item has an emotion label in both run {seeded.labelled} and run {seeded.judged}"
    }
    scores = itself["text"]["scores"]
    for name in ("BLEU-1", "BLEU-4", "ROUGE-L"):
        assert scores[name] == pytest.approx(1.0, abs=1e-6), name
    assert scores["METEOR"] > 0.9  # its fragmentation penalty keeps even identical texts below 1
    # The teacher's items carry the manifest's emotions, but its model (EmpathyEval) labels no clip:
    # comparing the manifest with itself would be 1.0 and measure nothing.
    assert "accuracy" not in itself["ser"]
    assert itself["ser"]["unavailable"] == (
        f"the model of run {seeded.teacher} produced no emotion labels (only the +emotion LLM judges label "
        "the query clip; the manifest's query_emotion is a reference, not a prediction)"
    )


def test_ser_accuracy_measures_the_labels_the_judged_model_read(
    module_store: Store, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    """The +emotion judge's run has the manifest's emotions on its items, like the teacher: SER compares
    the labels its emotion model read (wrong on every fourth clip, none for item 39) with the teacher's."""
    assert 0 < labelled_accuracy() < 1
    code = main(
        [
            "report",
            "text-agreement",
            str(seeded.labelled),
            "--teacher",
            str(seeded.teacher),
            "--json",
            *database(module_store),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert report["ser"]["count"] == 34
    assert report["ser"]["accuracy"] == pytest.approx(labelled_accuracy())


def database(store: Store) -> list[str]:
    return ["--database-url", store.url.render_as_string(hide_password=False)]


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_references_file_bad_lines_are_listed_and_nothing_is_computed(
    module_store: Store, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "refs.jsonl",
        [
            {"item_key": "item-005", "assessment": "Fine.", "emotion": "sad"},
            "{not json",
            {"assessment": "no key"},
            {"item_key": "item-006"},
            {"item_key": "item-005", "emotion": "happy"},
            {"item_key": "item-007", "assessment": 3},
        ],
    )
    code = main(
        ["report", "text-agreement", str(seeded.judged), "--references", str(path), *database(module_store)]
    )
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert f"{path}:2: not valid JSON" in err
    assert f"{path}:3: item_key must be a non-empty string" in err
    assert f"{path}:4: no reference: give an assessment, an emotion, or both" in err
    assert f"{path}:5: emotion 'happy' differs from 'sad' (line 1) for item_key 'item-005'" in err
    assert f"{path}:6: assessment must be a non-empty string" in err
    assert (
        "error [references_invalid]: references file refs.jsonl has 5 problem(s): line 2: not valid JSON"
        in err
    )
    with pytest.raises(ReferencesInvalid, match="unknown format"):
        read_references(tmp_path / "refs.txt")
    with pytest.raises(ReferencesInvalid, match="cannot read the file"):
        read_references(tmp_path / "missing.csv")


def test_references_file_with_several_references_and_emotions(
    module_store: Store, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CSV references: two of one key, emotion on some rows only; SER compares the labels the +emotion
    judge's model read (by `predicted`) with the file's, 1 of 3 right."""
    path = tmp_path / "refs.csv"
    path.write_text(
        "item_key,assessment,emotion,comment\n"
        f'item-005,"{SENTENCES[1]}",,first\n'
        f'item-005,"{SENTENCES[0]}",,second\n'
        f"item-006,,SAD.,\n"
        f"item-007,,sad,\n"
        f'item-008,"{SENTENCES[0]}",angry,\n'
    )
    texts = read_references(path)
    assert texts.assessments["item-005"] == [SENTENCES[1], SENTENCES[0]]
    assert texts.emotions == {"item-006": "SAD.", "item-007": "sad", "item-008": "angry"}
    code = main(
        [
            "report",
            "text-agreement",
            str(seeded.labelled),
            "--references",
            str(path),
            "--json",
            *database(module_store),
        ]
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    report = json.loads(out)
    assert (report["matched"], report["without_hypothesis"], report["without_reference"]) == (2, 0, 33)
    assert [predicted(index) for index in (6, 7, 8)] == [
        "sad",
        "happy",
        "sad",
    ]  # the file: SAD. (right), sad, angry
    assert report["ser"]["count"] == 3 and report["ser"]["accuracy"] == pytest.approx(1 / 3)


def test_a_run_export_is_a_references_file(
    module_store: Store, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "teacher.jsonl"
    assert (
        main(
            [
                "report",
                "export",
                str(seeded.teacher),
                "--format",
                "jsonl",
                "-o",
                str(export),
                *database(module_store),
            ]
        )
        == EXIT_OK
    )
    capsys.readouterr()
    code = main(
        [
            "report",
            "text-agreement",
            str(seeded.teacher),
            "--references",
            str(export),
            "--json",
            *database(module_store),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert report["matched"] == 35 and report["text"]["scores"]["BLEU-4"] == pytest.approx(1.0)
    assert report["ser"]["unavailable"].startswith(
        f"the model of run {seeded.teacher} produced no emotion labels"
    )
    code = main(
        [
            "report",
            "text-agreement",
            str(seeded.labelled),
            "--references",
            str(export),
            "--json",
            *database(module_store),
        ]
    )
    assert code == EXIT_OK
    assert json.loads(capsys.readouterr().out)["ser"]["accuracy"] == pytest.approx(labelled_accuracy())


def test_no_matched_item_or_no_assessment_is_a_clear_failure(
    module_store: Store, seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "refs.jsonl", [{"item_key": "elsewhere", "assessment": "Kind."}])
    code = main(
        ["report", "text-agreement", str(seeded.judged), "--references", str(path), *database(module_store)]
    )
    assert code == EXIT_USER_ERROR
    assert (
        "no key has both a hypothesis and a reference (30 hypotheses, 1 references)"
        in capsys.readouterr().err
    )
    scores_only = seed_run(
        module_store,
        [SeededItem(RunItemSpec("item-005", "q.wav", "r.wav"), sha("q5"), sha("r5"), (3.0, 3.0, 3.0, 3.0))],
        mode="scores",
        name="scores only",
        judge="scorer",
    )
    code = main(
        [
            "report",
            "text-agreement",
            str(scores_only),
            "--teacher",
            str(seeded.teacher),
            *database(module_store),
        ]
    )
    assert code == EXIT_USER_ERROR
    assert f"run {scores_only} has no assessments: judge it in assessment mode" in capsys.readouterr().err
    code = main(
        ["report", "text-agreement", str(seeded.judged), "--teacher", "99999", *database(module_store)]
    )
    assert code == EXIT_USER_ERROR and "no run 99999" in capsys.readouterr().err
