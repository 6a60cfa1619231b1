"""The judge prompt is versioned, and its score line is parsed strictly."""

from __future__ import annotations

import hashlib

import pytest

from evalsvc.engine.prompt import PROMPT_VERSION, parse_score_line, render_prompt
from evalsvc.engine.types import Scores
from evalsvc.errors import SCORE_LINE_MALFORMED, SCORE_LINE_MISSING, SCORE_OUT_OF_RANGE, ItemError

# Pinned: editing the prompt text without bumping PROMPT_VERSION would let old cached scores answer
# for a different prompt. Update both together.
PINNED_PROMPT_DIGESTS = {
    "empathyeval-v1": "3e2876c6e907d676eb654108c2155f8df1e5546ba05cda6f95fd3577b6346388",
}


def prompt_text_digest() -> str:
    return hashlib.sha256(render_prompt().encode()).hexdigest()


def test_prompt_text_matches_its_version() -> None:
    assert PINNED_PROMPT_DIGESTS.get(PROMPT_VERSION) == prompt_text_digest()


def test_prompt_has_query_then_response_audio_slots() -> None:
    prompt = render_prompt()
    assert prompt.count("<|audio_pad|>") == 2
    assert prompt.index("User query:") < prompt.index("System response:")
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Intent: comfort.\nSCORES: NS=4 WA=3 EU=5 ES=2", Scores(4, 3, 5, 2)),
        ("assessment\n\nSCORES: NS=4.5 WA=1 EU=1.25 ES=5\n\n", Scores(4.5, 1, 1.25, 5)),
        ("SCORES:NS=1 WA=1 EU=1 ES=1", Scores(1, 1, 1, 1)),
    ],
)
def test_valid_score_lines_parse(text: str, expected: Scores) -> None:
    assert parse_score_line(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", SCORE_LINE_MISSING),
        ("The response is kind. I would give it a 4.", SCORE_LINE_MISSING),
        ("SCORES: NS=4 WA=3 EU=5 ES=2\nThanks for listening!", SCORE_LINE_MISSING),
        ("SCORES: NS=4 WA=3 EU=5", SCORE_LINE_MALFORMED),
        ("SCORES: NS=four WA=3 EU=5 ES=2", SCORE_LINE_MALFORMED),
        ("SCORES: WA=3 NS=4 EU=5 ES=2", SCORE_LINE_MALFORMED),
        ("SCORES: NS=4 WA=3 EU=5 ES=2 extra", SCORE_LINE_MALFORMED),
        ("SCORES: NS=-1 WA=3 EU=5 ES=2", SCORE_LINE_MALFORMED),
        ("SCORES: NS=4 WA=3 EU=5 ES=6", SCORE_OUT_OF_RANGE),
        ("SCORES: NS=0 WA=3 EU=5 ES=2", SCORE_OUT_OF_RANGE),
        ("SCORES: NS=4 WA=3 EU=5.01 ES=5.5", SCORE_OUT_OF_RANGE),
    ],
)
def test_invalid_score_lines_give_an_error_not_a_number(text: str, code: str) -> None:
    result = parse_score_line(text)
    assert isinstance(result, ItemError)
    assert result.code == code
    assert result.message
