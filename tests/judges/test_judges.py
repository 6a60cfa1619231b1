"""The three judges end to end against a scripted OpenAI-compatible server on loopback: prompts with
and without emotion labels, both A/B orders and the tie rule, Stage 3 as teacher text, and every
reply that must not become a number (refusal, garbage, echoed template, truncation)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from evalsvc.engine.prompt import parse_score_line
from evalsvc.engine.types import Scores
from evalsvc.errors import InvalidParameter, LLMAuthFailed, LLMUnreachable
from evalsvc.judges import (
    ABResult,
    AssessmentResult,
    EmotionLabel,
    JudgeSpec,
    LLMClient,
    LLMConfig,
    LLMJudge,
    MosResult,
    PairTexts,
    TurnInput,
    ledger_totals,
    summarize_ab,
    summarize_mos,
)
from tests.judges.conftest import MODEL, ClientFactory
from tests.judges.openai_server import Failure, Reply, ScriptedOpenAI, free_port, turns


def emotion(label: str) -> EmotionLabel:
    return EmotionLabel(label, 0.9, {label: 0.9}, label)


QUERY = TurnInput("I failed my driving test again and I feel stupid.", emotion("sadness"))
GOOD = TurnInput(
    "GOOD: That sounds so discouraging. Failing twice does not make you stupid.", emotion("neutral")
)
BAD = TurnInput("You should practise more.", emotion("neutral"))


def run(judge_id: str, pairs: list[PairTexts], client: LLMClient, language: str = "en") -> list[Any]:
    return LLMJudge(JudgeSpec.parse(judge_id, language), client).judge_many(pairs)  # type: ignore[arg-type]


def test_mos_reads_one_integer_per_pair(llm: ClientFactory) -> None:
    with llm() as (client, server):
        results = run("llm-mos", [PairTexts(QUERY, GOOD), PairTexts(QUERY, BAD)], client)
    assert [r.score for r in results] == [5, 2]
    assert all(isinstance(r, MosResult) and r.error is None and len(r.calls) == 1 for r in results)
    assert len(server.requests) == 2


def test_emotion_lines_only_in_the_emotion_variant(llm: ClientFactory) -> None:
    with llm() as (client, server):
        run("llm-mos", [PairTexts(QUERY, GOOD)], client)
        run("llm-mos+emotion", [PairTexts(QUERY, GOOD)], client)
    plain, with_labels = (body["messages"][-1]["content"] for body in server.requests)
    assert "emotion label" not in plain
    assert "User emotion label: sadness" in with_labels
    assert "System response emotion label: neutral" in with_labels


def test_chinese_prompts_name_the_labels_in_chinese(llm: ClientFactory) -> None:
    with llm(ScriptedOpenAI(lambda body, n: Reply('{"score": 3}'))) as (client, server):
        (result,) = run("llm-mos+emotion", [PairTexts(QUERY, GOOD)], client, language="zh")
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "用户情绪标签：悲伤" in prompt and "系统回复情绪标签：中性" in prompt
    assert "需求支持" in prompt and result.score == 3


def test_ab_asks_both_orders_and_agreeing_verdicts_stand(llm: ClientFactory) -> None:
    pairs = [PairTexts(QUERY, GOOD, BAD), PairTexts(QUERY, BAD, GOOD), PairTexts(QUERY, BAD, BAD)]
    with llm() as (client, server):
        results = run("llm-ab", pairs, client)
    assert [(r.verdict, r.forward, r.backward, r.flipped) for r in results] == [
        (1, 1, 1, False),
        (-1, -1, -1, False),
        (0, 0, 0, False),
    ]
    # Each pair is shown once as (response, reference) and once as (reference, response); the calls
    # run concurrently, so they arrive in any order.
    shown = Counter((turns(body)["Response A"], turns(body)["Response B"]) for body in server.requests)
    expected = Counter()
    for pair in pairs:
        expected[(pair.response.transcript, pair.reference.transcript)] += 1
        expected[(pair.reference.transcript, pair.response.transcript)] += 1
    assert shown == expected and len(server.requests) == 6
    assert all(len(r.calls) == 2 for r in results)


def test_a_position_biased_judge_gets_zero_and_every_flip_recorded(llm: ClientFactory) -> None:
    """SpeechJudge #1: 'A' wins whichever response is shown first."""
    with llm(ScriptedOpenAI(lambda body, n: Reply('{"verdict": 1}'))) as (client, _):
        results = run("llm-ab", [PairTexts(QUERY, GOOD, BAD), PairTexts(QUERY, BAD, GOOD)], client)
    assert [(r.verdict, r.forward, r.backward) for r in results] == [(0, 1, -1), (0, 1, -1)]
    summary = summarize_ab(results)
    assert summary.flip_rate == 1.0 and summary.ab_score == 0.0 and summary.ties == 2


def test_ab_needs_a_reference_before_any_call(llm: ClientFactory) -> None:
    with llm() as (client, server):
        with pytest.raises(InvalidParameter, match=r"pair 1: .*reference_audio or reference_transcript"):
            run("llm-ab", [PairTexts(QUERY, GOOD, BAD), PairTexts(QUERY, GOOD)], client)
        with pytest.raises(InvalidParameter, match="needs an emotion label for the reference"):
            run("llm-ab+emotion", [PairTexts(QUERY, GOOD, TurnInput("ok"))], client)
    assert server.requests == []


def test_assessment_is_structured_and_renders_as_teacher_text(llm: ClientFactory) -> None:
    with llm() as (client, _):
        (result,) = run("llm-assessment+emotion", [PairTexts(QUERY, GOOD)], client)
    assert isinstance(result, AssessmentResult) and result.error is None
    assessment = result.assessment
    assert assessment is not None
    assert assessment.scores == Scores(5, 4, 5, 4)
    assert assessment.suggestions == ("Name the feeling.", "Offer one concrete next step.")
    text = result.text or ""
    assert text.splitlines()[-1] == "SCORES: NS=5 WA=4 EU=5 ES=4"
    assert parse_score_line(text) == assessment.scores  # EmpathyEval's own parser reads it
    assert "1. True intent: They want reassurance" in text
    assert result.to_dict()["assessment"]["scores"]["avg"] == 4.5


def test_chinese_teacher_text_keeps_the_score_line(llm: ClientFactory) -> None:
    with llm() as (client, _):
        (result,) = run("llm-assessment", [PairTexts(QUERY, GOOD)], client)
    chinese = result.assessment.to_text("zh")
    assert chinese.startswith("用户情绪：") and parse_score_line(chinese) == result.assessment.scores


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(None, refusal="I can't help with evaluating this content."), "llm_refused"),
        (Reply("", finish_reason="content_filter"), "llm_refused"),
        (Reply("The response is kind, I'd say 4 out of 5."), "llm_reply_unreadable"),
        (Reply('{"score": 4.5}'), "llm_reply_unreadable"),
        (Reply('{"score": "4"}'), "llm_reply_unreadable"),
        (Reply('{"score": true}'), "llm_reply_unreadable"),
        (Reply('{"score": 6}'), "llm_reply_unreadable"),
        (Reply('{"score": 4, "reason": "kind"}'), "llm_reply_unreadable"),
        (Reply('{"score": 4}\n{"score": 5}'), "llm_reply_unreadable"),
        (Reply('{"sco', finish_reason="length"), "llm_reply_unreadable"),
        (Reply(""), "llm_reply_unreadable"),
        (Reply('{"score": <one integer from 1 to 5>}'), "llm_reply_echoes_template"),
    ],
)
def test_a_reply_that_is_not_the_answer_is_never_a_score(llm: ClientFactory, reply: Reply, code: str) -> None:
    with llm(ScriptedOpenAI(lambda body, n: reply)) as (client, _):
        (result,) = run("llm-mos", [PairTexts(QUERY, GOOD)], client)
    assert result.score is None
    assert result.error is not None and result.error.code == code
    assert len(result.calls) == 1  # answered, so paid for: it stays in the ledger


def test_an_echoed_prompt_ending_in_a_score_is_not_read_as_that_score(llm: ClientFactory) -> None:
    """prometheus-eval #58: the prompt came back with the generation, and a regex read the template."""

    def echo(body: dict[str, Any], n: int) -> Reply:
        return Reply(body["messages"][-1]["content"] + '\n{"score": 5}')

    with llm(ScriptedOpenAI(echo)) as (client, _):
        (result,) = run("llm-mos", [PairTexts(QUERY, BAD)], client)
    assert result.score is None and result.error.code == "llm_reply_echoes_template"


@pytest.mark.parametrize(
    ("text", "score"), [("4", 4), (" 2\n", 2), ('```json\n{"score": 3}\n```', 3), ('  {"score":1}', 1)]
)
def test_the_papers_bare_integer_and_a_fenced_object_are_read(
    llm: ClientFactory, text: str, score: int
) -> None:
    with llm(ScriptedOpenAI(lambda body, n: Reply(text))) as (client, _):
        (result,) = run("llm-mos", [PairTexts(QUERY, GOOD)], client)
    assert result.score == score and result.error is None


@pytest.mark.parametrize("reply", ['{"verdict": 2}', "+1", "A", '{"verdict": -1.0}'])
def test_ab_verdicts_are_strict(llm: ClientFactory, reply: str) -> None:
    with llm(ScriptedOpenAI(lambda body, n: Reply(reply))) as (client, _):
        (result,) = run("llm-ab", [PairTexts(QUERY, GOOD, BAD)], client)
    assert result.verdict is None and result.error.code == "llm_reply_unreadable"


def test_one_unreadable_order_fails_the_ab_pair_but_both_calls_are_billed(llm: ClientFactory) -> None:
    script = lambda body, n: Reply('{"verdict": 1}') if n == 0 else Reply("B is better")  # noqa: E731
    with llm(ScriptedOpenAI(script), concurrency=1) as (client, _):
        (result,) = run("llm-ab", [PairTexts(QUERY, GOOD, BAD)], client)
    assert isinstance(result, ABResult)
    assert (result.verdict, result.flipped) == (None, None)
    assert result.error.code == "llm_reply_unreadable" and len(result.calls) == 2


def test_assessment_with_a_missing_part_is_unreadable(llm: ClientFactory) -> None:
    partial = {"query_emotion": "sad", "response_emotion": "warm", "scores": {"NS": 4, "WA": 4, "EU": 4}}
    blank = {
        "query_emotion": " ",
        "response_emotion": "warm",
        "scores": {"NS": 4, "WA": 4, "EU": 4, "ES": 4},
        "true_intent": "comfort",
        "meets_need": "yes",
        "suggestions": ["ask"],
    }
    for body in (partial, blank):
        with llm(ScriptedOpenAI(lambda b, n, body=body: Reply(json.dumps(body)))) as (client, _):
            (result,) = run("llm-assessment", [PairTexts(QUERY, GOOD)], client)
        assert result.assessment is None and result.error.code == "llm_reply_unreadable"


def test_a_rate_limited_item_fails_alone_and_may_be_retried(llm: ClientFactory) -> None:
    def script(body: dict[str, Any], n: int) -> Reply | Failure:
        if "practise" in body["messages"][-1]["content"]:
            return Failure(429, "Rate limit reached", {"retry-after-ms": "1"})
        return Reply('{"score": 4}')

    with llm(ScriptedOpenAI(script), max_retries=2) as (client, _):
        results = run(
            "llm-mos", [PairTexts(QUERY, GOOD), PairTexts(QUERY, BAD), PairTexts(QUERY, GOOD)], client
        )
    assert [r.score for r in results] == [4, None, 4]
    assert results[1].error.code == "llm_rate_limited" and results[1].calls == ()
    assert summarize_mos(results).judged == 2


def test_an_unreachable_api_or_a_bad_key_stops_the_batch(llm: ClientFactory) -> None:
    client = LLMClient(
        LLMConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model=MODEL, max_retries=0), None
    )
    with pytest.raises(LLMUnreachable):
        run("llm-mos", [PairTexts(QUERY, GOOD)] * 3, client)
    refusing = ScriptedOpenAI(lambda body, n: Failure(401, "Incorrect API key provided"))
    with llm(refusing) as (client, _), pytest.raises(LLMAuthFailed, match="Incorrect API key"):
        run("llm-mos", [PairTexts(QUERY, GOOD)] * 3, client)


def test_ledger_sums_every_call_and_its_cost(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(lambda body, n: Reply('{"verdict": 0}', prompt_tokens=1000, completion_tokens=10))
    with llm(server) as (client, _):
        results = run("llm-ab", [PairTexts(QUERY, GOOD, BAD)] * 3, client)
    totals = ledger_totals(results)
    assert (totals.calls, totals.prompt_tokens, totals.completion_tokens) == (6, 6000, 60)
    assert totals.cost_usd == pytest.approx(6 * (1000 * 2.5 + 10 * 10.0) / 1e6)
    assert sum(call.cost_usd for r in results for call in r.calls) == pytest.approx(totals.cost_usd)


def test_unknown_judges_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="llm-mos, llm-mos\\+emotion"):
        JudgeSpec.parse("gpt-judge")
    assert JudgeSpec.parse("llm-ab+emotion", "zh") == JudgeSpec("llm-ab", True, "zh")
