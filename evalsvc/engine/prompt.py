"""The judge's instruction and the strict parser for the score line it asks for.

The prompt text is part of every fingerprint through `PROMPT_VERSION`: changing a single word of it
changes what the model hears, so it must change the version (a test pins the text to the version).
"""

from __future__ import annotations

import re

from evalsvc.engine.types import DIMENSIONS, SCORE_MAX, SCORE_MIN, PairResult, Scores
from evalsvc.errors import SCORE_LINE_MALFORMED, SCORE_LINE_MISSING, SCORE_OUT_OF_RANGE, ItemError
from evalsvc.settings import Mode

PROMPT_VERSION = "empathyeval-v1"

SYSTEM_TEXT = (
    "You are EmpathyEval, an expert judge of empathy in spoken dialogue. You listen to what a user "
    "said and how they said it, and to how a spoken assistant answered."
)

INSTRUCTION_TEXT = (
    "Assess the spoken system response to the spoken user query.\n"
    "1. The user's true intent: what they feel, what they need, and what their voice reveals.\n"
    "2. Whether the response meets that empathetic need, in its wording and in its tone of voice.\n"
    "3. Actionable suggestions to make the response more empathetic.\n"
    "Then rate it from 1 to 5 on NS (need support), WA (wording appropriateness), EU (emotion "
    "understanding) and ES (emotional support). End with exactly one final line of the form\n"
    "SCORES: NS=<1-5> WA=<1-5> EU=<1-5> ES=<1-5>"
)

AUDIO_SLOT = "<|audio_start|><|audio_pad|><|audio_end|>"

# The user turn around its two audio clips; a generation server gets the same text as chat message
# parts (evalsvc.engine.served_requests), and a test renders those with the checkpoint's own template.
USER_TEMPLATE = "User query: {query_audio}\nSystem response: {response_audio}\n{instruction}"
# Qwen chat format, written out rather than rendered by a chat template so that the exact text the
# model sees is versioned here and not by whatever template ships with a checkpoint.
PROMPT_TEMPLATE = (
    "<|im_start|>system\n{system}<|im_end|>\n"
    "<|im_start|>user\n" + USER_TEMPLATE + "<|im_end|>\n"
    "<|im_start|>assistant\n"
)

_NUMBER = r"(\d+(?:\.\d+)?)"
_SCORE_LINE = re.compile(
    r"^SCORES:\s*NS=" + _NUMBER + r"\s+WA=" + _NUMBER + r"\s+EU=" + _NUMBER + r"\s+ES=" + _NUMBER + r"\s*$"
)


def render_prompt() -> str:
    """The judge prompt with one audio slot for the query and one for the response."""
    return PROMPT_TEMPLATE.format(
        system=SYSTEM_TEXT, query_audio=AUDIO_SLOT, response_audio=AUDIO_SLOT, instruction=INSTRUCTION_TEXT
    )


def user_text_pieces() -> tuple[str, str, str]:
    """The user turn's text before the query audio, between the two clips, and after the response."""
    text = USER_TEMPLATE.format(
        query_audio=AUDIO_SLOT, response_audio=AUDIO_SLOT, instruction=INSTRUCTION_TEXT
    )
    before, between, after = text.split(AUDIO_SLOT)
    return before, between, after


def parse_score_line(text: str) -> Scores | ItemError:
    """Read the four scores from the final non-empty line of a generated assessment.

    Strict on purpose: a judge whose answer cannot be read gets no score rather than a guessed one.
    Returns an `ItemError` (missing, malformed or out-of-range line) instead of raising, because a
    bad generation is a per-item outcome, not a failure of the request.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or not lines[-1].upper().startswith("SCORES"):
        return ItemError(SCORE_LINE_MISSING, "the assessment does not end with a 'SCORES: ...' line")
    match = _SCORE_LINE.match(lines[-1])
    if match is None:
        return ItemError(
            SCORE_LINE_MALFORMED,
            f"the final line {lines[-1][:120]!r} is not 'SCORES: NS=<1-5> WA=<1-5> EU=<1-5> ES=<1-5>'",
        )
    values = [float(group) for group in match.groups()]
    for name, value in zip(DIMENSIONS, values, strict=True):
        if not SCORE_MIN <= value <= SCORE_MAX:
            return ItemError(SCORE_OUT_OF_RANGE, f"{name}={value:g} is outside {SCORE_MIN:g}-{SCORE_MAX:g}")
    return Scores.from_values(values)


def reflection_text(assessment: str) -> str:
    """The assessment without a final `SCORES:` line (kept when it is not a valid score line): the judge's
    reflection, which training data interleaves and text metrics compare."""
    lines = assessment.rstrip().splitlines()
    if lines and isinstance(parse_score_line(lines[-1]), Scores):
        lines = lines[:-1]
    return "\n".join(lines).strip()


def pair_result(
    mode: Mode, text: str | None, head_scores: Scores | None, timings: dict[str, float]
) -> PairResult:
    """One pair's result from what the judge produced: heads' scores when there are any, else the
    scores read from the generated text's score line (a per-item error when it has none)."""
    assessment = text if mode in ("assessment", "both") else None
    if head_scores is not None or mode == "assessment":
        return PairResult(scores=head_scores, assessment=assessment, timings_ms=dict(timings))
    parsed = parse_score_line(text or "")
    if isinstance(parsed, ItemError):
        return PairResult(scores=None, assessment=assessment, error=parsed, timings_ms=dict(timings))
    return PairResult(scores=parsed, assessment=assessment, timings_ms=dict(timings))
