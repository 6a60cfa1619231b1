"""ReEmpathy sequences on token-id lists: pure functions, no tokenizer, no I/O.

The paper's training sequence is (x_query, r1, f1, r2, f2, ..., rK, fK): fixed-size chunks r_k of the
response stream alternate with fixed-size chunks f_k of the reflection stream (the judge's assessment),
so the model learns to reflect while it speaks instead of before. Its baselines reorder the same two
streams: CoTBS puts the whole reflection before the response, plain SFT drops the reflection.

When the response also has speech tokens (GLM-4-Voice `<|audio_N|>`, 12.5 Hz), the response stream is
GLM-4-Voice's own output order, 13 text tokens then 26 speech tokens, repeated (`speech_text_stream`);
that stream is what gets cut into response chunks, so a chunk size that is a multiple of 39 keeps each
chunk on whole 13:26 blocks.

The streams rarely have the same number of chunks. `Policy` says what to do then:

    drop     the sample is left out (outcome `dropped`)
    append   alternate while both streams last, then the rest of the longer one (`appended`)
    stretch  re-cut the reflection into ceil(len / K) tokens per chunk, K the response's chunk count,
             so it spans the response; response chunks left over are appended (`stretched`)

Invariants, property-tested in tests/training/test_training_interleave.py:

- the response chunks, concatenated, give back the response stream exactly; likewise the reflection;
- every chunk but the last of its stream has exactly that stream's chunk size (for `stretch`, the
  stretched size, which `Interleaving.reflection_chunk_size` records).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

Stream = Literal["response", "reflection"]
Policy = Literal["append", "drop", "stretch"]
POLICIES: tuple[Policy, ...] = get_args(Policy)
GLM_TEXT_BLOCK = 13
GLM_SPEECH_BLOCK = 26


class Outcome(enum.StrEnum):
    BALANCED = "balanced"  # both streams had the same number of chunks
    DROPPED = "dropped"
    APPENDED = "appended"
    STRETCHED = "stretched"


@dataclass(frozen=True)
class Chunk:
    stream: Stream
    tokens: Sequence[int]


@dataclass(frozen=True)
class Interleaving:
    """The chunks in training order; empty when the sample was dropped."""

    chunks: tuple[Chunk, ...]
    outcome: Outcome
    reflection_chunk_size: int

    def tokens_of(self, stream: Stream) -> list[int]:
        """One stream's tokens back, in order (what the invariants compare against the input)."""
        return [token for chunk in self.chunks if chunk.stream == stream for token in chunk.tokens]


def cut(tokens: Sequence[int], size: int) -> list[Sequence[int]]:
    """Consecutive chunks of `size` tokens; only the last may be shorter. No chunk for no tokens."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [tokens[start : start + size] for start in range(0, len(tokens), size)]


def speech_text_stream(
    text: Sequence[int],
    speech: Sequence[int],
    text_block: int = GLM_TEXT_BLOCK,
    speech_block: int = GLM_SPEECH_BLOCK,
) -> list[int]:
    """GLM-4-Voice's response order: `text_block` text tokens, `speech_block` speech tokens, repeated;
    when one kind runs out the rest of the other follows. Each kind keeps its own order exactly."""
    if text_block < 1 or speech_block < 1:
        raise ValueError("text and speech block sizes must be at least 1")
    stream: list[int] = []
    text_at = speech_at = 0
    while text_at < len(text) or speech_at < len(speech):
        stream.extend(text[text_at : text_at + text_block])
        stream.extend(speech[speech_at : speech_at + speech_block])
        text_at += text_block
        speech_at += speech_block
    return stream


def interleave(
    response: Sequence[int],
    reflection: Sequence[int],
    *,
    response_chunk: int = 15,
    reflection_chunk: int = 15,
    policy: Policy = "append",
) -> Interleaving:
    """ReEmpathy: r1 f1 r2 f2 ... with the chunk-count policy of the module docstring."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    responses = cut(response, response_chunk)
    reflections = cut(reflection, reflection_chunk)
    size = reflection_chunk
    if len(responses) == len(reflections):
        outcome = Outcome.BALANCED
    elif policy == "drop":
        return Interleaving((), Outcome.DROPPED, reflection_chunk)
    elif policy == "stretch" and responses and reflection:
        size = math.ceil(len(reflection) / len(responses))
        reflections = cut(reflection, size)
        outcome = Outcome.STRETCHED
    else:
        outcome = Outcome.APPENDED
    chunks: list[Chunk] = []
    for index in range(max(len(responses), len(reflections))):
        if index < len(responses):
            chunks.append(Chunk("response", responses[index]))
        if index < len(reflections):
            chunks.append(Chunk("reflection", reflections[index]))
    return Interleaving(tuple(chunks), outcome, size)


def reflection_first(response: Sequence[int], reflection: Sequence[int]) -> Interleaving:
    """CoTBS: the whole reflection, then the whole response (one chunk each)."""
    chunks = (Chunk("reflection", reflection), Chunk("response", response))
    return Interleaving(tuple(chunk for chunk in chunks if chunk.tokens), Outcome.BALANCED, len(reflection))


def response_only(response: Sequence[int]) -> Interleaving:
    """Plain SFT: the response alone."""
    return Interleaving((Chunk("response", response),) if response else (), Outcome.BALANCED, 0)
