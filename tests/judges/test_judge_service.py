"""The LLM judges as a stored service, on SQLite and PostgreSQL: the tiny Whisper and classifier
through transformers, the LLM a scripted OpenAI-compatible server on loopback counting requests.

What is proved: a second identical judgement makes no call; transcripts and labels are computed once
per clip; A/B keeps both orders and its flip; llm-assessment lands in `results` in EmpathyEval's shape
under a model version whose profile is the judge id; failures are ledgered but never cached; a budget
stops a batch before its first call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from evalsvc.engine.prompt import parse_score_line
from evalsvc.errors import InvalidParameter, LLMBudgetExceeded
from evalsvc.judge_scoring import JudgedPair, JudgeService
from evalsvc.judges.emotion_models import TransformersEmotionLabeller, emotion_provenance
from evalsvc.judges.transcripts import WhisperTranscriber, whisper_provenance
from evalsvc.llm_client import Prices
from evalsvc.settings import Settings
from evalsvc.store import ModelVersion, Result, Store, create_run
from evalsvc.store.judging import run_spend
from evalsvc.store.models import EmotionLabelRow, LLMCallRow, LLMVerdict, Transcript
from tests.helpers import tone
from tests.judges.conftest import ClientFactory
from tests.judges.openai_server import Reply, ScriptedOpenAI, judge_like

QUERY = tone(1.0, 220.0)
RESPONSES = [tone(1.2, 330.0), tone(1.1, 440.0)]
REFERENCE = tone(1.3, 550.0)


def pairs(reference: Any = None) -> list[JudgedPair]:
    return [JudgedPair(QUERY, response, reference) for response in RESPONSES]


def count(store: Store, table: type) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_a_second_identical_judgement_makes_no_call(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with llm() as (client, server):
        service = JudgeService(judge_models_settings, store, client)
        first = service.judge("llm-mos+emotion", pairs())
        assert len(server.requests) == 2
        second = JudgeService(judge_models_settings, store, client).judge("llm-mos+emotion", pairs())
        assert len(server.requests) == 2
    assert [a.cached for a in first] == [False, False] and [a.cached for a in second] == [True, True]
    assert [a.value for a in second] == [{"score": a.value["score"]} for a in first]  # type: ignore[index]
    assert [a.verdict_id for a in second] == [a.verdict_id for a in first]
    # One transcript and one label per distinct clip (the query is shared), one ledger row per call.
    assert count(store, Transcript) == 3 and count(store, EmotionLabelRow) == 3
    assert count(store, LLMCallRow) == 2 and count(store, LLMVerdict) == 2


def test_a_fully_cached_run_loads_neither_speech_model(
    llm: ClientFactory,
    judge_models_settings: Settings,
    store: Store,
    transcriber: WhisperTranscriber,
    labeller: TransformersEmotionLabeller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The provenance read from the files is the one the loaded models report: same fingerprint.
    assert whisper_provenance(judge_models_settings) == transcriber.provenance
    assert emotion_provenance(judge_models_settings) == labeller.provenance
    loads: list[str] = []
    for name, model in (("asr", WhisperTranscriber), ("emotion", TransformersEmotionLabeller)):
        real = model.load
        monkeypatch.setattr(
            model, "load", lambda settings, name=name, real=real: loads.append(name) or real(settings)
        )
    with llm() as (client, server):
        JudgeService(judge_models_settings, store, client).judge("llm-mos+emotion", pairs())
        assert sorted(loads) == ["asr", "emotion"]
        again = JudgeService(judge_models_settings, store, client).judge("llm-mos+emotion", pairs())
        assert len(server.requests) == 2
    assert [a.cached for a in again] == [True, True] and all(a.texts for a in again)
    assert sorted(loads) == ["asr", "emotion"]  # the second run loaded nothing


def test_ab_keeps_both_orders_and_the_flip_and_keys_by_the_reference(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    def biased(body: dict[str, Any], number: int) -> Reply:
        return Reply(json.dumps({"verdict": 1}))  # "A is better", whichever clip is A

    with llm(ScriptedOpenAI(biased)) as (client, server):
        service = JudgeService(judge_models_settings, store, client)
        answers = service.judge("llm-ab", pairs("the reference answer"))
        assert len(server.requests) == 4
        assert [a.value for a in answers] == [
            {"verdict": 0, "forward": 1, "backward": -1, "flipped": True}
        ] * 2
        service.judge("llm-ab", pairs("another reference"))  # another reference is another question
        assert len(server.requests) == 8
        service.judge("llm-ab", pairs("the reference answer"))
        assert len(server.requests) == 8
    with store.session() as session:
        rows = session.scalars(select(LLMVerdict)).all()
        assert {(row.value, row.forward, row.backward, row.flipped) for row in rows} == {(0, 1, -1, True)}
        assert len({row.reference_sha256 for row in rows}) == 2


def test_ab_without_a_reference_is_refused_before_any_call(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with llm() as (client, server):
        service = JudgeService(judge_models_settings, store, client)
        with pytest.raises(InvalidParameter, match="reference"):
            service.judge("llm-ab", pairs())
        with pytest.raises(InvalidParameter, match="reference_audio"):
            service.judge("llm-ab+emotion", pairs("text cannot be labelled"))
    assert server.requests == []


def test_assessment_results_are_empathyeval_shaped_rows_of_results(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with llm() as (client, _):
        answers = JudgeService(judge_models_settings, store, client).judge("llm-assessment", pairs())
    with store.session() as session:
        rows = session.scalars(select(Result).order_by(Result.id)).all()
        assert [row.id for row in rows] == [a.result_id for a in answers]
        for row in rows:
            version = session.get_one(ModelVersion, row.model_version_id)
            assert version.profile == "llm-assessment" and version.model_id == "judge-model"
            assert row.mode == "both" and row.assessment is not None
            scores = parse_score_line(row.assessment)
            assert (row.ns, row.wa, row.eu, row.es) == (scores.NS, scores.WA, scores.EU, scores.ES)
            assert row.avg == pytest.approx((row.ns + row.wa + row.eu + row.es) / 4)  # type: ignore[operator]


def test_a_cached_assessment_equals_the_fresh_one(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with llm() as (client, server):
        fresh = JudgeService(judge_models_settings, store, client).judge("llm-assessment", pairs())
        cached = JudgeService(judge_models_settings, store, client).judge("llm-assessment", pairs())
        assert len(server.requests) == 2
    assert [a.cached for a in cached] == [True, True]
    assert all(a.value and a.value["assessment"]["true_intent"] for a in fresh)  # type: ignore[index]
    assert [a.to_dict() | {"cached": None} for a in cached] == [a.to_dict() | {"cached": None} for a in fresh]


def test_duplicate_pairs_of_one_batch_are_sent_once(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    twice = [pairs()[0], pairs()[1], pairs()[0]]
    with llm() as (client, server):
        for judge in ("llm-assessment", "llm-mos"):
            answers = JudgeService(judge_models_settings, store, client).judge(judge, twice)
            assert [a.cached for a in answers] == [False] * 3
            assert answers[0].to_dict() == answers[2].to_dict() and answers[0].value is not None
        assert len(server.requests) == 4
    assert count(store, LLMCallRow) == 4 and count(store, Result) == 2 and count(store, LLMVerdict) == 2


def test_failures_are_ledgered_but_never_cached(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    def garbled_once(body: dict[str, Any], number: int) -> Reply:
        return Reply("five, I think") if number == 0 else judge_like(body, number)

    with llm(ScriptedOpenAI(garbled_once), concurrency=1) as (client, server):
        service = JudgeService(judge_models_settings, store, client)
        first = service.judge("llm-mos", pairs())
        assert [a.error.code if a.error else None for a in first] == ["llm_reply_unreadable", None]
        assert first[0].value is None and first[0].verdict_id is None
        second = service.judge("llm-mos", pairs())
        assert len(server.requests) == 3  # only the failed pair is asked again
    assert [a.cached for a in second] == [False, True] and all(a.error is None for a in second)
    with store.session() as session:
        codes = session.scalars(select(LLMCallRow.error_code).order_by(LLMCallRow.id)).all()
    assert sorted(codes, key=str) == sorted(["llm_reply_unreadable", None, None], key=str)


def test_a_budget_stops_the_batch_before_its_first_call(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with llm(max_tokens=64) as (client, server):
        service = JudgeService(judge_models_settings, store, client)
        service.judge("llm-mos", pairs()[:1], run_id=None)
        with pytest.raises(LLMBudgetExceeded, match="max-cost"):
            service.judge("llm-mos", pairs()[1:], max_cost_usd=1e-6)
        assert len(server.requests) == 1
        service.judge("llm-mos", pairs()[1:], max_cost_usd=1.0)
        assert len(server.requests) == 2


def test_a_budget_refuses_a_ledger_of_unpriced_calls(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with store.session() as session:
        run_id = create_run(session, name="unpriced", mode="scores", judge="llm-mos").id
    with llm(prices=Prices()) as (client, _):
        JudgeService(judge_models_settings, store, client).judge("llm-mos", pairs()[:1], run_id=run_id)
    with llm() as (client, server):
        service = JudgeService(judge_models_settings, store, client)
        with pytest.raises(LLMBudgetExceeded, match="without prices"):
            service.judge("llm-mos", pairs()[1:], run_id=run_id, budget_runs=[run_id], max_cost_usd=100.0)
        assert server.requests == []  # an unknown spend is not read as $0


def test_the_ledger_sums_tokens_and_cost_and_unknown_prices_stay_unknown(
    llm: ClientFactory, judge_models_settings: Settings, store: Store
) -> None:
    with store.session() as session:
        run_id = create_run(session, name="ledger", mode="scores", judge="llm-mos").id
    with llm() as (client, server):
        JudgeService(judge_models_settings, store, client).judge("llm-mos", pairs(), run_id=run_id)
        prompt = sum(len("".join(m["content"] for m in r["messages"])) // 4 for r in server.requests)
    with store.session() as session:
        spend = run_spend(session, [run_id])
    assert (spend.calls, spend.prompt_tokens) == (2, prompt)
    assert spend.cost_usd == pytest.approx((prompt * 2.5 + spend.completion_tokens * 10.0) / 1e6)
    with llm(prices=Prices()) as (client, _):
        unpriced = [JudgedPair(QUERY, REFERENCE)]
        JudgeService(judge_models_settings, store, client).judge("llm-mos", unpriced, run_id=run_id)
    with store.session() as session:
        assert run_spend(session, [run_id]).cost_usd is None  # not a partial sum read as the total
