"""`report text-agreement`: a run's assessments against reference assessments, matched by item key.

References come from a file (`read_references`) or from another run, the teacher (`teacher_texts`): the
LLM judge's `llm-assessment` run, or the run of the judge a new adapter was trained to imitate. The
metrics are `evalsvc.reports.text_metrics` (pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L, CIDEr-D;
SPICE, SPIDEr and FENSE reported as unavailable, with why) on the prose of the assessments, their
final `SCORES:` lines removed from both sides.

A references file is JSON lines or CSV (with a header), one reference per row:

    item_key     the run item it is for (the manifest's `id`)
    assessment   a reference assessment (a final SCORES line is ignored)
    emotion      optional: the item's reference emotion label, for SER accuracy

A row needs `assessment`, `emotion` or both. Several rows of one key are several references of that
item (the metrics take every reference of an item into account); the emotions of one key's rows
must agree. Other fields are ignored, so the JSON-lines export of a run (`report export --format
jsonl`) is a references file as it is. The whole file is checked first; every bad line is reported
with its number, and nothing is computed while there is one.

SER accuracy measures the judged run's model: its predictions are the emotion labels that model read in
the query clips (`store.judging.run_query_emotions`: only the +emotion LLM judges produce any), never the
run items' `emotion` column, which holds the manifest's `query_emotion`. The reference side is the file's
`emotion`, or the teacher run's item emotions (its manifest's `query_emotion`, or the label its own
+emotion judge read where the manifest has none). A run whose model produced no labels (EmpathyEval, a
judge without +emotion), or no item labelled on both sides, has SER reported unavailable, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter, ReferencesInvalid
from evalsvc.reports.text_metrics import keyed_text_agreement, ser_accuracy
from evalsvc.rowfiles import file_rows, problems_message
from evalsvc.store.judging import run_query_emotions
from evalsvc.store.run_records import item_assessments
from evalsvc.store.scope import get_run

_MAX_KEY = 200  # run_items.item_key


@dataclass
class Texts:
    """Assessments (several per key for references) and emotion labels, by item key; `no_emotions`
    says why a side has no labels at all, where that is not for want of data."""

    source: str
    assessments: dict[str, list[str]] = field(default_factory=dict)
    emotions: dict[str, str] = field(default_factory=dict)
    no_emotions: str | None = None


def judged_texts(session: Session, run_id: int, tenant_id: int | None) -> Texts:
    """The judged side: the run's assessments, and as emotions the labels its model produced for the
    query clips (SER's predictions)."""
    texts = _assessments(session, run_id, tenant_id)
    texts.emotions = run_query_emotions(session, run_id)
    if not texts.emotions:
        texts.no_emotions = (
            f"the model of {texts.source} produced no emotion labels (only the +emotion LLM judges label "
            "the query clip; the manifest's query_emotion is a reference, not a prediction)"
        )
    return texts


def teacher_texts(session: Session, run_id: int, tenant_id: int | None) -> Texts:
    """The reference side from a teacher run: its assessments, and the emotion of its items (the
    manifest's `query_emotion`, or the label the teacher's +emotion judge read where there is none)."""
    return _assessments(session, run_id, tenant_id, with_item_emotions=True)


def _assessments(
    session: Session, run_id: int, tenant_id: int | None, *, with_item_emotions: bool = False
) -> Texts:
    """The assessments of a run's items by key (items without one are left out), and with
    `with_item_emotions` their `emotion` column."""
    get_run(session, run_id, tenant_id=tenant_id)
    texts = Texts(f"run {run_id}")
    for key, emotion, assessment in item_assessments(session, run_id):
        if assessment and assessment.strip():
            texts.assessments[key] = [assessment]
        if emotion and with_item_emotions:
            texts.emotions[key] = emotion
    return texts


def read_references(path: Path) -> Texts:
    """The references of a JSON-lines or CSV file, checked whole; raises `ReferencesInvalid` listing
    every problem with its line."""
    texts = Texts(str(path))
    problems: list[tuple[int, str]] = []
    emotion_line: dict[str, int] = {}
    for line, row in file_rows(path):
        if isinstance(row, str):
            problems.append((line, row))
            continue
        row_problems = _check_row(row)
        if not row_problems:
            key, assessment, emotion = row["item_key"], row.get("assessment"), row.get("emotion")
            if emotion and texts.emotions.setdefault(key, emotion) != emotion:
                row_problems.append(
                    f"emotion {emotion!r} differs from {texts.emotions[key]!r} "
                    f"(line {emotion_line[key]}) for item_key {key!r}"
                )
            elif emotion:
                emotion_line.setdefault(key, line)
            if assessment and not row_problems:
                texts.assessments.setdefault(key, []).append(assessment)
        problems += [(line, message) for message in row_problems]
    if not problems and not texts.assessments and not texts.emotions:
        problems.append((0, "the file has no references"))
    if problems:
        raise ReferencesInvalid(problems_message("references", path, problems), problems)
    return texts


def text_agreement_report(run: Texts, references: Texts) -> dict[str, Any]:
    """The metrics of the run's assessments against the references, and SER accuracy where both
    sides have emotion labels; raises `InvalidParameter` when no item key has an assessment on both
    sides."""
    if not run.assessments:
        raise InvalidParameter(
            f"{run.source} has no assessments: judge it in assessment mode "
            "(`evalsvc bulk run --mode assessment` or `--mode both`)"
        )
    if not references.assessments:
        raise InvalidParameter(f"{references.source} has no reference assessments")
    hypotheses = {key: texts[0] for key, texts in run.assessments.items()}
    text = keyed_text_agreement(hypotheses, references.assessments)
    return {
        "run": run.source,
        "references": references.source,
        "matched": text["count"],
        "without_reference": len(text.pop("without_reference")),
        "without_hypothesis": len(text.pop("without_hypothesis")),
        "text": text,
        "ser": _ser(run, references),
    }


def _ser(run: Texts, references: Texts) -> dict[str, Any]:
    """SER accuracy of the run's predicted labels against the references', or why it is unavailable."""
    if run.no_emotions is not None:
        return {"unavailable": run.no_emotions}
    labelled = sorted(set(run.emotions) & set(references.emotions))
    if not labelled:
        return {"unavailable": f"no item has an emotion label in both {run.source} and {references.source}"}
    return ser_accuracy(
        [run.emotions[key] for key in labelled], [references.emotions[key] for key in labelled]
    )


def _check_row(row: dict[str, Any]) -> list[str]:
    problems = []
    key = row.get("item_key")
    if not isinstance(key, str) or not key.strip():
        problems.append("item_key must be a non-empty string")
    elif len(key) > _MAX_KEY:
        problems.append(f"item_key is longer than {_MAX_KEY} characters")
    present = []
    for name in ("assessment", "emotion"):
        value = row.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{name} must be a non-empty string")
        else:
            present.append(name)
    if not problems and not present:
        problems.append("no reference: give an assessment, an emotion, or both")
    return problems
