"""The three LLM judges over transcripts (and emotion labels): llm-mos, llm-ab, llm-assessment.

They are pure with respect to storage: text in, results out, every LLM call in `calls` (the ledger).
A result holds a value or an `ItemError`, never both, never a guessed number:
- reply problems (refused, unreadable, echoed template, request rejected) and transient failures that
  outlived the retries (429, 5xx, timeout) fail the item and the batch goes on; the transient codes
  (errors.LLM_TRANSIENT_CODES) say the same item may succeed when run again;
- an unreachable API, a refused key or an unknown model raise: every other call would fail alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalsvc.engine.types import DIMENSIONS, Scores
from evalsvc.errors import (
    InvalidParameter,
    ItemError,
    LLMRateLimited,
    LLMReplyError,
    LLMServerError,
    LLMTimeout,
)
from evalsvc.judges.prompts import (
    JUDGE_KINDS,
    PROMPT_VERSIONS,
    JudgeKind,
    Language,
    RenderedPrompt,
    TurnInput,
    render_ab,
    render_assessment,
    render_mos,
)
from evalsvc.judges.replies import (
    AssessmentReply,
    JudgeReply,
    MosReply,
    VerdictReply,
    parse_reply,
    response_format,
)
from evalsvc.llm_client import LLMCall, LLMClient

EMOTION_SUFFIX = "+emotion"
JUDGE_IDS: tuple[str, ...] = tuple(
    f"{kind}{suffix}" for kind in JUDGE_KINDS for suffix in ("", EMOTION_SUFFIX)
)
_ITEM_LEVEL = (LLMReplyError, LLMServerError, LLMRateLimited, LLMTimeout)
_SCHEMAS: dict[str, type[JudgeReply]] = {
    "llm-mos": MosReply,
    "llm-ab": VerdictReply,
    "llm-assessment": AssessmentReply,
}


@dataclass(frozen=True)
class JudgeSpec:
    """Which judge: its kind, whether the prompt carries emotion labels, the prompt language."""

    kind: JudgeKind
    with_emotion: bool = False
    language: Language = "en"

    @classmethod
    def parse(cls, judge_id: str, language: Language = "en") -> JudgeSpec:
        """'llm-mos', 'llm-ab+emotion', ... (JUDGE_IDS)."""
        if judge_id not in JUDGE_IDS:
            raise InvalidParameter(f"unknown judge {judge_id!r}; use one of {', '.join(JUDGE_IDS)}")
        kind = judge_id.removesuffix(EMOTION_SUFFIX)
        return cls(kind, judge_id.endswith(EMOTION_SUFFIX), language)  # type: ignore[arg-type]

    @property
    def judge_id(self) -> str:
        return f"{self.kind}{EMOTION_SUFFIX if self.with_emotion else ''}"

    @property
    def prompt_version(self) -> str:
        return PROMPT_VERSIONS[self.kind]

    @property
    def calls_per_pair(self) -> int:
        return 2 if self.kind == "llm-ab" else 1


@dataclass(frozen=True)
class PairTexts:
    """A judge's input: both turns, and for A/B the reference (ground-truth) response."""

    query: TurnInput
    response: TurnInput
    reference: TurnInput | None = None


@dataclass(frozen=True)
class MosResult:
    score: int | None
    error: ItemError | None
    calls: tuple[LLMCall, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, **_common(self.error, self.calls)}


@dataclass(frozen=True)
class ABResult:
    """The response against the reference: 1 better, -1 worse, 0 equal or the two orders disagree.

    `forward` is the verdict with the response shown first (as A), `backward` with it shown second,
    both from the response's side; `flipped` says they disagree (position bias, SpeechJudge #1)."""

    verdict: int | None
    forward: int | None
    backward: int | None
    error: ItemError | None
    calls: tuple[LLMCall, ...] = ()

    @property
    def flipped(self) -> bool | None:
        return None if self.forward is None or self.backward is None else self.forward != self.backward

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "forward": self.forward,
            "backward": self.backward,
            "flipped": self.flipped,
            **_common(self.error, self.calls),
        }


@dataclass(frozen=True)
class Assessment:
    """The paper's Stage 3 output: EmpathyEval's training target (teacher data)."""

    query_emotion: str
    response_emotion: str
    scores: Scores
    true_intent: str
    meets_need: str
    suggestions: tuple[str, ...]

    def to_text(self, language: Language = "en") -> str:
        """The assessment as EmpathyEval writes it: intent, need, suggestions, then the final line
        `SCORES: NS=.. WA=.. EU=.. ES=..` that evalsvc.engine.prompt.parse_score_line reads."""
        heads = _TEXT_HEADINGS[language]
        lines = [
            f"{heads[0]}{self.query_emotion}",
            f"{heads[1]}{self.response_emotion}",
            f"{heads[2]}{self.true_intent}",
            f"{heads[3]}{self.meets_need}",
            heads[4],
            *(f"- {suggestion}" for suggestion in self.suggestions),
            "SCORES: " + " ".join(f"{name}={getattr(self.scores, name):g}" for name in DIMENSIONS),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query_emotion": self.query_emotion,
            "response_emotion": self.response_emotion,
            "scores": self.scores.to_dict(),
            "true_intent": self.true_intent,
            "meets_need": self.meets_need,
            "suggestions": list(self.suggestions),
        }


_TEXT_HEADINGS: dict[str, tuple[str, ...]] = {
    "en": (
        "Emotion of the query: ",
        "Emotion of the response: ",
        "1. True intent: ",
        "2. Meets the need: ",
        "3. Suggestions:",
    ),
    "zh": ("用户情绪：", "回复情绪：", "1. 真实意图：", "2. 是否满足需求：", "3. 改进建议："),
}


@dataclass(frozen=True)
class AssessmentResult:
    assessment: Assessment | None
    error: ItemError | None
    calls: tuple[LLMCall, ...] = ()
    language: Language = "en"

    @property
    def text(self) -> str | None:
        return self.assessment.to_text(self.language) if self.assessment else None

    def to_dict(self) -> dict[str, Any]:
        assessment = self.assessment.to_dict() if self.assessment else None
        return {"assessment": assessment, "text": self.text, **_common(self.error, self.calls)}


JudgeResult = MosResult | ABResult | AssessmentResult


@dataclass(frozen=True)
class _Outcome:
    """One call's parsed answer or the item error it ended in, and its ledger row if it was answered."""

    reply: JudgeReply | None
    error: ItemError | None
    call: LLMCall | None = None


class LLMJudge:
    """One judge bound to a client; `judge_many` fans every call of every pair out at once."""

    def __init__(self, spec: JudgeSpec, client: LLMClient) -> None:
        self.spec = spec
        self.client = client

    def judge(self, pair: PairTexts) -> JudgeResult:
        return self.judge_many([pair])[0]

    def judge_many(self, pairs: Sequence[PairTexts]) -> list[JudgeResult]:
        """Results in input order. Bad input is refused before any call (nothing is spent on it)."""
        for index, pair in enumerate(pairs):
            self._check(index, pair)
        prompts = [judge_prompts(self.spec, pair) for pair in pairs]
        schema = _SCHEMAS[self.spec.kind]
        tasks = [lambda prompt=prompt: self._ask(prompt, schema) for group in prompts for prompt in group]
        outcomes = iter(self.client.run_all(tasks))
        return [self._combine([next(outcomes) for _ in group]) for group in prompts]

    def _check(self, index: int, pair: PairTexts) -> None:
        turns = {"query": pair.query, "response": pair.response}
        if self.spec.kind == "llm-ab":
            if pair.reference is None:
                raise InvalidParameter(
                    f"pair {index}: the judge {self.spec.judge_id} compares the response with a reference "
                    "response; supply a reference_audio or reference_transcript"
                )
            turns["reference"] = pair.reference
        if self.spec.with_emotion:
            missing = [name for name, turn in turns.items() if turn.emotion is None]
            if missing:
                raise InvalidParameter(
                    f"pair {index}: the judge {self.spec.judge_id} needs an emotion label for the "
                    f"{' and '.join(missing)}"
                )

    def _ask(self, prompt: RenderedPrompt, schema: type[JudgeReply]) -> _Outcome:
        try:
            reply = self.client.complete(prompt.messages, response_format(schema))
        except _ITEM_LEVEL as error:
            return _Outcome(None, ItemError.from_exception(error))
        try:
            return _Outcome(parse_reply(reply, schema, prompt.echo_markers), None, reply.call)
        except LLMReplyError as error:
            return _Outcome(None, ItemError.from_exception(error), reply.call)

    def _combine(self, outcomes: list[_Outcome]) -> JudgeResult:
        calls = tuple(outcome.call for outcome in outcomes if outcome.call is not None)
        error = next((outcome.error for outcome in outcomes if outcome.error is not None), None)
        if self.spec.kind == "llm-ab":
            return _ab_result(outcomes, error, calls)
        if self.spec.kind == "llm-mos":
            reply = outcomes[0].reply
            return MosResult(reply.score if isinstance(reply, MosReply) else None, error, calls)
        reply = outcomes[0].reply
        assessment = _assessment(reply) if isinstance(reply, AssessmentReply) else None
        return AssessmentResult(assessment, error, calls, self.spec.language)


def judge_prompts(spec: JudgeSpec, pair: PairTexts) -> list[RenderedPrompt]:
    """The prompts one pair is judged with: one call, or for A/B the response first then second."""
    language, emotion = spec.language, spec.with_emotion
    if spec.kind == "llm-mos":
        return [render_mos(pair.query, pair.response, language, emotion)]
    if spec.kind == "llm-assessment":
        return [render_assessment(pair.query, pair.response, language, emotion)]
    if pair.reference is None:
        raise InvalidParameter(f"the judge {spec.judge_id} needs a reference response")
    return [
        render_ab(pair.query, pair.response, pair.reference, language, emotion),  # the response is A
        render_ab(pair.query, pair.reference, pair.response, language, emotion),  # the response is B
    ]


def _ab_result(outcomes: list[_Outcome], error: ItemError | None, calls: tuple[LLMCall, ...]) -> ABResult:
    """Both orders must be read; they stand when they agree and make a 0 when they do not."""
    first, second = (outcome.reply for outcome in outcomes)
    if error is not None or not isinstance(first, VerdictReply) or not isinstance(second, VerdictReply):
        return ABResult(None, None, None, error, calls)
    forward, backward = first.verdict, -second.verdict  # in the second order the response is B
    return ABResult(forward if forward == backward else 0, forward, backward, None, calls)


def _assessment(reply: AssessmentReply) -> Assessment:
    scores = Scores.from_values([getattr(reply.scores, name) for name in DIMENSIONS])
    return Assessment(
        reply.query_emotion,
        reply.response_emotion,
        scores,
        reply.true_intent,
        reply.meets_need,
        tuple(reply.suggestions),
    )


def _common(error: ItemError | None, calls: tuple[LLMCall, ...]) -> dict[str, Any]:
    return {"error": error.to_dict() if error else None, "calls": [call.to_dict() for call in calls]}
