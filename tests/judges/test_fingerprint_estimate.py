"""Judge fingerprints (what keys the cache) and the estimate of calls, tokens and cost of a run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from evalsvc.judges import (
    EmotionLabel,
    JudgeSpec,
    LLMConfig,
    ModelProvenance,
    PairTexts,
    Prices,
    TurnInput,
    approx_tokens,
    estimate,
    estimate_unseen,
    judge_fingerprint,
)
from evalsvc.judges.estimate import EXPECTED_OUTPUT_TOKENS

LLM = LLMConfig(base_url="http://127.0.0.1:8000/v1", model="gpt-4o", prices=Prices(2.5, 10.0))
ASR = ModelProvenance("asr", "transformers", "openai/whisper-large-v3", "abc", None, {"language": "auto"})
EMOTION = ModelProvenance(
    "emotion", "funasr", "emotion2vec/emotion2vec_plus_large", None, "f00", {"targets": []}
)


MOS_EMOTION = JudgeSpec("llm-mos", True)


def key(
    spec: JudgeSpec = MOS_EMOTION,
    llm: LLMConfig = LLM,
    asr: ModelProvenance = ASR,
    emotion: ModelProvenance | None = EMOTION,
) -> str:
    return judge_fingerprint(spec, llm, asr, emotion).key


def test_every_input_of_a_judge_result_changes_its_key() -> None:
    base = key()
    variants = [
        key(JudgeSpec("llm-mos", False), emotion=None),
        key(JudgeSpec("llm-ab", True)),
        key(JudgeSpec("llm-mos", True, "zh")),
        key(llm=replace(LLM, base_url="https://api.openai.com/v1")),
        key(llm=replace(LLM, model="gpt-4o-2024-08-06")),
        key(llm=replace(LLM, temperature=0.7)),
        key(llm=replace(LLM, seed=1)),
        key(llm=replace(LLM, max_tokens=64)),
        key(llm=replace(LLM, structured_output="off")),
        key(asr=replace(ASR, options={"language": "zh"})),
        key(asr=replace(ASR, model_revision="def")),
        key(emotion=replace(EMOTION, weights_sha256="f01")),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_what_results_do_not_depend_on_leaves_the_key_alone() -> None:
    base = key()
    assert key(llm=replace(LLM, concurrency=64, max_retries=0, timeout_s=5, prices=Prices())) == base
    assert key(llm=replace(LLM, base_url="http://127.0.0.1:8000/v1/")) == base
    assert key(asr=replace(ASR, packages={"transformers": "9.9"})) == base
    plain = JudgeSpec("llm-mos", False)
    assert key(plain, emotion=EMOTION) == key(plain, emotion=None)  # it never reads the labels


def test_the_fingerprint_records_its_provenance() -> None:
    fingerprint = judge_fingerprint(JudgeSpec("llm-ab", True, "zh"), LLM, ASR, EMOTION)
    record = fingerprint.to_dict()
    assert record["fingerprint"] == fingerprint.key and record["judge"] == "llm-ab+emotion"
    assert record["prompt_version"] == "llm-ab-v1" and record["prompt_language"] == "zh"
    assert record["asr"]["model_id"] == "openai/whisper-large-v3"
    assert record["emotion"]["backend"] == "funasr"
    assert record["decoding"] == {
        "temperature": 0.0,
        "seed": 0,
        "max_tokens": 1024,
        "structured_output": "auto",
    }
    assert "openai" in record["packages"]
    with pytest.raises(ValueError, match="reads emotion labels"):
        judge_fingerprint(JudgeSpec("llm-mos", True), LLM, ASR, None)


def test_token_approximation_counts_cjk_per_character() -> None:
    assert approx_tokens("word " * 40) == 50
    assert approx_tokens("我今天很难过") == 6
    assert approx_tokens("") == 0


def test_calls_tokens_and_cost_per_judge() -> None:
    turn = TurnInput("x" * 120, EmotionLabel("neutral", 1.0, {"neutral": 1.0}, "neutral"))
    pairs = [PairTexts(turn, turn, turn)] * 10
    mos = estimate(JudgeSpec("llm-mos"), pairs, LLM)
    ab = estimate(JudgeSpec("llm-ab"), pairs, LLM)
    assessment = estimate(JudgeSpec("llm-assessment", True), pairs, LLM)
    assert (mos.calls, ab.calls, assessment.calls) == (10, 20, 10)
    assert mos.output_tokens == 10 * EXPECTED_OUTPUT_TOKENS["llm-mos"]
    assert ab.max_output_tokens == 20 * 1024
    assert mos.cost_usd == pytest.approx((mos.input_tokens * 2.5 + mos.output_tokens * 10.0) / 1e6)
    assert assessment.max_cost_usd > assessment.cost_usd > mos.cost_usd
    with_labels = estimate(JudgeSpec("llm-mos", True), pairs, LLM)
    assert with_labels.input_tokens > mos.input_tokens  # the emotion lines are counted


def test_the_estimate_before_transcription_matches_the_one_after_for_the_same_lengths() -> None:
    for spec in (JudgeSpec("llm-ab", True), JudgeSpec("llm-mos", False, "zh")):
        unseen = estimate_unseen(spec, 200, LLM, transcript_chars=80)
        filler = ("好" if spec.language == "zh" else "word ") * 80
        label = EmotionLabel("neutral", 1.0, {"neutral": 1.0}, "neutral") if spec.with_emotion else None
        turn = TurnInput(filler[:80], label)
        seen = estimate(spec, [PairTexts(turn, turn, turn)] * 200, LLM)
        assert unseen == seen


def test_unknown_prices_estimate_tokens_but_no_cost() -> None:
    unpriced = estimate_unseen(JudgeSpec("llm-mos"), 5, replace(LLM, prices=Prices()))
    assert unpriced.input_tokens > 0 and unpriced.cost_usd is None and unpriced.max_cost_usd is None
