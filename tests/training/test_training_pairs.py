"""DPO pairs: the margin and dominance rules (property-tested), and the files built from real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsvc.engine.tiny import build_tokenizer
from evalsvc.errors import InvalidParameter
from evalsvc.store import Store
from evalsvc.store.item_streams import ItemRow
from evalsvc.training.codec import TokenCodec
from evalsvc.training.pairs import Choice, PairRule, build_pairs, choose
from evalsvc.training.texts import TextSource
from tests.training.helpers import (
    Pair,
    add_scored_run,
    llamafactory_convert,
    sha,
    transcript_meta,
    trl_check_preference,
)

score = st.integers(10, 50).map(lambda tenths: tenths / 10)  # 1.0-5.0 in steps of 0.1, so ties occur
four_scores = st.tuples(score, score, score, score)


def row(key: str, scores: tuple[float, float, float, float], judge: int = 1) -> ItemRow:
    return ItemRow(
        run_id=1, item_key=key, query_ref="/q.wav", response_ref=f"/{key}.wav", system=None, meta={},
        query_sha256="q", response_sha256=sha(key), model_version_id=judge,
        scores=scores, avg=sum(scores) / 4, assessment=None,
    )  # fmt: skip


@given(st.lists(four_scores, max_size=6), st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]), st.booleans())
def test_pairs_respect_the_margin_and_dominance_rules(
    scores: list[tuple[float, float, float, float]], margin: float, dominance: bool
) -> None:
    candidates = [row(f"k{index}", values) for index, values in enumerate(scores)]
    result = choose(candidates, PairRule(margin=margin, dominance=dominance))
    if len(candidates) < 2:
        assert result == "single_candidate"
        return
    averages = [candidate.avg for candidate in candidates]
    best, worst = max(averages), min(averages)  # type: ignore[type-var]
    if best - worst < margin - 1e-9:  # type: ignore[operator]
        assert result == "below_margin"
        return
    if isinstance(result, str):
        assert result == "not_dominant" and dominance
        return
    assert isinstance(result, Choice)
    assert result.chosen.avg == best and result.rejected.avg == worst
    assert result.margin >= margin - 1e-9
    if dominance:
        assert all(c >= r for c, r in zip(result.chosen.scores, result.rejected.scores, strict=True))  # type: ignore[arg-type]


def test_scores_of_different_judges_are_not_paired() -> None:
    candidates = [row("a", (5, 5, 5, 5), judge=1), row("b", (1, 1, 1, 1), judge=2)]
    assert choose(candidates, PairRule()) == "mixed_judges"


def test_ties_are_broken_by_item_key() -> None:
    candidates = [row("b", (4, 4, 4, 4)), row("a", (4, 4, 4, 4)), row("c", (2, 2, 2, 2))]
    result = choose(candidates, PairRule())
    assert isinstance(result, Choice) and result.chosen.item_key == "a"


def text(name: str, **more: object) -> dict[str, object]:
    return transcript_meta(f"response {name}", query_transcript="I lost my job today.", **more)


def first_run() -> list[Pair]:
    return [
        Pair("1a", "Q1", "R1a", (4.5, 4.5, 4.5, 4.5), meta=text("1a")),
        Pair("1b", "Q1", "R1b", (2.0, 2.0, 2.0, 2.0), meta=text("1b")),
        Pair("2a", "Q2", "R2a", (3.2, 3.2, 3.2, 3.2), meta=text("2a")),
        Pair("2b", "Q2", "R2b", (3.0, 3.0, 3.0, 3.0), meta=text("2b")),  # margin 0.2
        Pair("3a", "Q3", "R3a", (4.0, 4.0, 4.0, 4.0), meta=text("3a")),  # alone
        Pair("4a", "Q4", "R4a", (5.0, 5.0, 1.0, 5.0), meta=text("4a")),  # avg 4, worse EU
        Pair("4b", "Q4", "R4b", (3.0, 3.0, 3.0, 3.0), meta=text("4b")),
        Pair("5a", "Q5", "R5a", (3.6, 3.6, 3.6, 3.6), meta=text("5a")),  # margin exactly 0.5
        Pair("5b", "Q5", "R5b", (3.1, 3.1, 3.1, 3.1), meta=text("5b")),
        Pair("6a", "Q6", "R6a", (4.0, 4.0, 4.0, 4.0), meta={"response_transcript": "no query text"}),
        Pair("6b", "Q6", "R6b", (1.0, 1.0, 1.0, 1.0), meta={"response_transcript": "still none"}),
        Pair("7a", "Q7", "R7a", None, meta=text("7a")),  # pending
    ]


def second_run() -> list[Pair]:
    return [
        Pair("1c", "Q1", "R1c", (3.0, 3.0, 3.0, 3.0), meta=text("1c"), system="sys-c"),
        Pair("1a", "Q1", "R1a", (4.5, 4.5, 4.5, 4.5), meta=text("1a"), system="sys-c"),  # run 1's again
    ]


@pytest.fixture
def run_ids(store: Store) -> list[int]:
    first = add_scored_run(store, first_run(), name="one")
    second = add_scored_run(store, second_run(), name="two")
    other_judge = add_scored_run(store, [Pair("3z", "Q3", "R3z", (1.0, 1.0, 1.0, 1.0))], judge="judge-2")
    return [first, second, other_judge]


def build(store: Store, run_ids: list[int], out: Path, **rule: object) -> dict[str, object]:
    with TextSource() as texts, store.session() as session:
        report = build_pairs(
            session, run_ids, rule=PairRule(**rule), texts=texts, codec=None,  # type: ignore[arg-type]
            formats=("llamafactory", "trl"), out_dir=out, name="dpo",
        )  # fmt: skip
    return report.to_dict()


def read(out: Path) -> tuple[list[dict], list[dict]]:
    entry = json.loads((out / "dataset_info.json").read_text())["dpo"]
    assert entry["ranking"] is True
    lines = (out / "dpo.jsonl").read_text().splitlines()
    factory = [llamafactory_convert(json.loads(line), entry) for line in lines]
    trl = [json.loads(line) for line in (out / "dpo.trl.jsonl").read_text().splitlines()]
    for item in trl:
        trl_check_preference(item)
    return factory, trl


def test_pairs_from_runs(store: Store, run_ids: list[int], tmp_path: Path) -> None:
    report = build(store, run_ids[:2], tmp_path)
    assert report["written"] == {"dpo.jsonl": 4, "dpo.trl.jsonl": 3}
    assert report["dropped"] == {
        "below_margin": 1, "duplicate_candidates": 1, "single_candidate": 1,
        "trl_no_query_text": 1, "unscored_items": 1,
    }  # fmt: skip
    factory, trl = read(tmp_path)
    chosen = {(r["response"][0]["content"], r["response"][1]["content"]) for r in factory}
    assert chosen == {
        ("response 1a", "response 1b"),  # over 1c (3.0) and the duplicate of 1a
        ("response 4a", "response 4b"),
        ("response 5a", "response 5b"),  # exactly at the margin
        ("no query text", "still none"),
    }
    for item in factory:
        assert item["prompt"] == [{"role": "user", "content": "<audio>"}]
        [audio] = item["audios"]  # relative to the dataset directory, LLaMA-Factory's media_dir
        assert not Path(audio).is_absolute() and (tmp_path / audio).resolve().parent == Path("/audio")
    assert {item["prompt"][0]["content"] for item in trl} == {"I lost my job today."}


def test_dominance_and_judges(store: Store, run_ids: list[int], tmp_path: Path) -> None:
    report = build(store, run_ids, tmp_path, dominance=True, margin=1.0)
    dropped = report["dropped"]
    assert isinstance(dropped, dict)
    assert dropped["not_dominant"] == 1  # Q4
    assert dropped["mixed_judges"] == 1  # Q3 now has a candidate of judge-2
    assert dropped["below_margin"] == 2  # Q2 and Q5
    factory, _ = read(tmp_path)
    assert len(factory) == 2  # Q1 and Q6


def test_speech_tokens_need_the_tokenizer(store: Store, tmp_path: Path) -> None:
    speech = {"response_speech_tokens": [7, 8, 9]}
    run = add_scored_run(
        store,
        [
            Pair("a", "Q", "Ra", (5, 5, 5, 5), meta=text("a", **speech)),
            Pair("b", "Q", "Rb", (1, 1, 1, 1), meta=text("b")),
        ],
    )
    with pytest.raises(InvalidParameter, match="--tokenizer"):
        build(store, [run], tmp_path)
    build_tokenizer().save_pretrained(tmp_path / "tok")
    with TextSource() as texts, store.session() as session:
        build_pairs(
            session, [run], rule=PairRule(), texts=texts, codec=TokenCodec.from_path(tmp_path / "tok"),
            formats=("trl",), out_dir=tmp_path, name="dpo",
        )  # fmt: skip
    [pair] = [json.loads(line) for line in (tmp_path / "dpo.trl.jsonl").read_text().splitlines()]
    assert pair["chosen"][0]["content"] == "response a<|audio_7|><|audio_8|><|audio_9|>"
    assert not (tmp_path / "dpo.jsonl").exists()
