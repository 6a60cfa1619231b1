"""What judging N pairs will take before any call: calls, tokens and cost, per judge.

Input tokens are counted on the prompts as they will be rendered: on the real transcripts when they
are known, else on transcripts of an assumed length. No tokenizer of the remote model is available
offline, so tokens are approximated the way OpenAI describes its tokenizers: about 4 characters per
token for Latin-script text, about 1 token per CJK character, plus a few tokens of overhead per
message. Expect +-25% on real text; the output side has an expected figure (what the judges'
answers usually take) and a bound (every call running to EVALSVC_LLM_MAX_TOKENS), the bound being
what a --max-cost check must use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from evalsvc.judges.emotions import EmotionLabel
from evalsvc.judges.judges import JudgeSpec, PairTexts, judge_prompts
from evalsvc.judges.prompts import TurnInput
from evalsvc.llm_client import LLMConfig

# Answer sizes: a JSON object with one small integer; a Stage 3 assessment (two captions, three
# paragraphs, a few suggestions: ~250 English words, ~400 Chinese characters).
EXPECTED_OUTPUT_TOKENS = {"llm-mos": 8, "llm-ab": 10, "llm-assessment": 400}
TOKENS_PER_MESSAGE = 4
TOKENS_PER_CALL = 3
DEFAULT_TRANSCRIPT_CHARS = 120
"""Assumed characters per turn when the transcripts are not known yet (a spoken turn of ~8 s)."""


@dataclass(frozen=True)
class JudgeEstimate:
    judge: str
    pairs: int
    calls: int
    input_tokens: int
    output_tokens: int
    max_output_tokens: int
    cost_usd: float | None
    max_cost_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def approx_tokens(text: str) -> int:
    cjk = sum(1 for char in text if _is_cjk(char))
    return math.ceil(cjk + (len(text) - cjk) / 4)


def estimate(spec: JudgeSpec, pairs: Sequence[PairTexts], llm: LLMConfig) -> JudgeEstimate:
    """The estimate for these pairs, their prompts rendered exactly as the judge will send them."""
    return _estimate(spec, len(pairs), sum(_input_tokens(spec, pair) for pair in pairs), llm)


def estimate_unseen(
    spec: JudgeSpec, pairs: int, llm: LLMConfig, transcript_chars: int = DEFAULT_TRANSCRIPT_CHARS
) -> JudgeEstimate:
    """The estimate before transcription, every turn assumed `transcript_chars` long."""
    filler = ("好" if spec.language == "zh" else "word ") * transcript_chars
    label = EmotionLabel("neutral", 1.0, {"neutral": 1.0}, "neutral") if spec.with_emotion else None
    turn = TurnInput(filler[:transcript_chars], label)
    return _estimate(spec, pairs, pairs * _input_tokens(spec, PairTexts(turn, turn, turn)), llm)


def _input_tokens(spec: JudgeSpec, pair: PairTexts) -> int:
    return sum(
        TOKENS_PER_CALL
        + sum(TOKENS_PER_MESSAGE + approx_tokens(message["content"]) for message in prompt.messages)
        for prompt in judge_prompts(spec, pair)
    )


def _estimate(spec: JudgeSpec, pairs: int, input_tokens: int, llm: LLMConfig) -> JudgeEstimate:
    calls = pairs * spec.calls_per_pair
    output_tokens = calls * EXPECTED_OUTPUT_TOKENS[spec.kind]
    max_output_tokens = calls * llm.max_tokens
    return JudgeEstimate(
        judge=spec.judge_id,
        pairs=pairs,
        calls=calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        max_output_tokens=max_output_tokens,
        cost_usd=llm.prices.cost(input_tokens, output_tokens),
        max_cost_usd=llm.prices.cost(input_tokens, max_output_tokens),
    )


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x3000 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF
