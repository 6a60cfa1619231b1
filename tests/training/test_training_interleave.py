"""Property tests of the ReEmpathy interleaving and of rendering chunks back to text.

Random stream lengths (including empty), chunk sizes and policies; the invariants are those of
`evalsvc.training.interleave`: each stream comes back exactly, every chunk but the last of its stream
has exactly the chunk size, and the streams alternate starting with the response.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from evalsvc.engine.tiny import build_tokenizer
from evalsvc.training.codec import TokenCodec, parse_speech_tokens
from evalsvc.training.interleave import (
    POLICIES,
    Interleaving,
    Outcome,
    cut,
    interleave,
    reflection_first,
    response_only,
    speech_text_stream,
)

tokens = st.lists(st.integers(min_value=0, max_value=50_000), max_size=300)
sizes = st.integers(min_value=1, max_value=40)


def _stream_chunks(layout: Interleaving, stream: str) -> list[list[int]]:
    return [list(chunk.tokens) for chunk in layout.chunks if chunk.stream == stream]


def _assert_fixed_size(chunks: list[list[int]], size: int) -> None:
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert all(0 < len(chunk) <= size for chunk in chunks)


@given(tokens, tokens, sizes, sizes, st.sampled_from(POLICIES))
@settings(max_examples=400, deadline=None)
def test_interleaving_invariants(
    response: list[int], reflection: list[int], response_size: int, reflection_size: int, policy: str
) -> None:
    layout = interleave(
        response, reflection, response_chunk=response_size, reflection_chunk=reflection_size, policy=policy
    )
    responses, reflections = _stream_chunks(layout, "response"), _stream_chunks(layout, "reflection")
    planned = (len(cut(response, response_size)), len(cut(reflection, reflection_size)))
    if layout.outcome == Outcome.DROPPED:
        assert policy == "drop" and planned[0] != planned[1] and layout.chunks == ()
        return
    assert layout.tokens_of("response") == response
    assert layout.tokens_of("reflection") == reflection
    _assert_fixed_size(responses, response_size)
    _assert_fixed_size(reflections, layout.reflection_chunk_size)
    # Alternation from the response: r f r f ..., then the rest of the longer stream.
    streams = [chunk.stream for chunk in layout.chunks]
    paired = min(len(responses), len(reflections))
    assert streams[: 2 * paired] == ["response", "reflection"] * paired
    assert len(set(streams[2 * paired :])) <= 1
    if layout.outcome == Outcome.BALANCED:
        assert planned[0] == planned[1] and layout.reflection_chunk_size == reflection_size
    elif layout.outcome == Outcome.STRETCHED:
        assert policy == "stretch" and len(reflections) <= len(responses)
    else:
        assert layout.outcome == Outcome.APPENDED and planned[0] != planned[1]
        assert layout.reflection_chunk_size == reflection_size


def test_the_paper_default_fifteen_tokens_both_streams() -> None:
    layout = interleave(list(range(45)), list(range(100, 130)))
    assert [(chunk.stream, len(chunk.tokens)) for chunk in layout.chunks] == [
        ("response", 15), ("reflection", 15), ("response", 15), ("reflection", 15), ("response", 15),
    ]  # fmt: skip
    assert layout.outcome == Outcome.APPENDED


def test_stretch_spreads_a_long_reflection_over_the_response() -> None:
    layout = interleave(list(range(30)), list(range(100, 190)), policy="stretch")
    assert layout.outcome == Outcome.STRETCHED and layout.reflection_chunk_size == 45
    assert [chunk.stream for chunk in layout.chunks] == ["response", "reflection"] * 2


@given(tokens, tokens)
def test_baseline_layouts_keep_both_streams(response: list[int], reflection: list[int]) -> None:
    cotbs = reflection_first(response, reflection)
    assert cotbs.tokens_of("response") == response and cotbs.tokens_of("reflection") == reflection
    assert [chunk.stream for chunk in cotbs.chunks] == (["reflection"] if reflection else []) + (
        ["response"] if response else []
    )
    plain = response_only(response)
    assert plain.tokens_of("response") == response and plain.tokens_of("reflection") == []


@given(tokens, tokens, st.integers(1, 20), st.integers(1, 40))
def test_speech_text_stream_keeps_each_kind_in_order(
    text: list[int], speech: list[int], text_block: int, speech_block: int
) -> None:
    marked_text = [("t", token) for token in text]
    marked_speech = [("s", token) for token in speech]
    stream = speech_text_stream(marked_text, marked_speech, text_block, speech_block)  # type: ignore[arg-type]
    assert [token for kind, token in stream if kind == "t"] == text
    assert [token for kind, token in stream if kind == "s"] == speech
    # While both kinds last, each round is exactly text_block text then speech_block speech.
    kinds = "".join(kind for kind, _ in stream)
    round_pattern = "t" * text_block + "s" * speech_block
    full_rounds = min(len(text) // text_block, len(speech) // speech_block)
    assert kinds.startswith(round_pattern * full_rounds)


def test_glm_voice_default_is_13_text_then_26_speech() -> None:
    stream = speech_text_stream(list(range(20)), list(range(1000, 1060)))
    assert stream[:13] == list(range(13)) and stream[13:39] == list(range(1000, 1026))
    assert stream[39:46] == list(range(13, 20)) and stream[46:] == list(range(1026, 1060))


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> TokenCodec:
    directory = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(directory)
    return TokenCodec.from_path(Path(directory))


@given(st.text(max_size=120), sizes)
@settings(max_examples=200, deadline=None)
def test_rendered_chunks_concatenate_to_the_text(codec: TokenCodec, text: str, size: int) -> None:
    """Byte-level BPE chunks may end inside a character; the rendering never loses or garbles it."""
    [ids] = codec.encode([text])
    parts = codec.render_chunks(cut(ids, size))
    assert "".join(parts) == text
    assert "\ufffd" not in "".join(parts) or "\ufffd" in text


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    st.lists(st.integers(0, 16_383), max_size=90),
    sizes,
)
@settings(max_examples=150, deadline=None)
def test_speech_tokens_render_as_glm_voice_tokens(
    codec: TokenCodec, text: str, speech: list[int], size: int
) -> None:
    assume("<|audio_" not in text)
    [ids] = codec.encode([text])
    rendered = "".join(codec.render_chunks(cut(speech_text_stream(ids, codec.speech_ids(speech)), size)))
    assert [int(n) for n in re.findall(r"<\|audio_(\d+)\|>", rendered)] == speech
    assert re.sub(r"<\|audio_\d+\|>", "", rendered) == text


def test_speech_tokens_parse_from_a_list_or_from_text() -> None:
    assert parse_speech_tokens([3, 0, 16383]) == [3, 0, 16383]
    assert parse_speech_tokens("<|audio_3|><|audio_0|> <|audio_12|>") == [3, 0, 12]
    for bad in ([1, -2], [1.5], [True], "hello <|audio_1|>", {"a": 1}, 7):
        assert parse_speech_tokens(bad) is None


def test_rendering_survives_a_sentencepiece_style_decoder() -> None:
    """Metaspace decoders drop the leading space of whatever they decode; chunks must not lose it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    corpus = ["it makes sense that you feel this way", "take all the time you need"]
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"]))
    codec = TokenCodec(tokenizer)
    [ids] = codec.encode(["take all the time you need it makes sense"])
    for size in (1, 2, 3, 5):
        assert "".join(codec.render_chunks(cut(ids, size))) == tokenizer.decode(ids)
