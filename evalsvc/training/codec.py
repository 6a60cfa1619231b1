"""Text and GLM-4-Voice speech tokens <-> token ids, and chunks back to text without losing a byte.

Interleaving works on token ids, the training files hold text (LLaMA-Factory and TRL tokenize it
again with the trained model's tokenizer), so this module is the bridge both ways:

- text goes through a Hugging Face *fast* tokenizer given by path (its Rust `tokenizers` backend,
  batch-encoded, no special tokens added);
- speech tokens `<|audio_N|>` get ids `speech_offset + N`, above every id of the tokenizer, so they
  never collide with text and need no tokenizer support (the tiny model's tokenizer has none);
- `render_chunks` turns chunks back into strings whose concatenation, less its speech tokens, is
  exactly the decoded text of the stream. Decoding each piece on its own is not enough: a byte-level
  BPE chunk (or a 13-token text block before speech) may end inside a multi-byte character (U+FFFD),
  and SentencePiece-style decoders drop a leading space at every start. When the pieces decoded
  alone do not add up to the whole, they are decoded as growing prefixes instead, and each piece gets
  the part of the full text that its prefix settles; a character cut in two goes to the piece that
  completes it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from evalsvc.errors import InvalidParameter

SPEECH_TOKEN = "<|audio_{}|>"
SPEECH_TOKENS_PATTERN = re.compile(r"<\|audio_(\d+)\|>")


class TokenCodec:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self.speech_offset = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_path(cls, path: Path) -> TokenCodec:
        """A directory saved by `save_pretrained` (its tokenizer.json) or a tokenizer.json file."""
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise InvalidParameter(
                f"no fast tokenizer at {path}: give a directory with a tokenizer.json (any Hugging Face "
                "fast tokenizer saved with save_pretrained) or the tokenizer.json file itself"
            )
        try:
            return cls(Tokenizer.from_file(str(file)))
        except Exception as error:  # the Rust loader raises plain Exception subclasses for bad files
            raise InvalidParameter(f"cannot load the tokenizer {file}: {error}") from error

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, in one batch; no BOS/EOS, the training tool adds its own."""
        return [
            encoding.ids for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]

    def speech_ids(self, speech_tokens: Sequence[int]) -> list[int]:
        return [self.speech_offset + token for token in speech_tokens]

    def render_chunks(self, chunks: Sequence[Sequence[int]]) -> list[str]:
        """Text of each chunk of one stream; `"".join` of the result renders the whole stream, and
        without its `<|audio_N|>` tokens it is exactly the decoded text of the stream."""
        segments = [
            (index, is_speech, list(run))
            for index, chunk in enumerate(chunks)
            for is_speech, run in itertools.groupby(chunk, key=lambda token: token >= self.speech_offset)
        ]
        pieces = iter(self._text_pieces([tokens for _, is_speech, tokens in segments if not is_speech]))
        texts = [""] * len(chunks)
        for index, is_speech, tokens in segments:
            if is_speech:
                texts[index] += "".join(SPEECH_TOKEN.format(token - self.speech_offset) for token in tokens)
            else:
                texts[index] += next(pieces)
        return texts

    def _text_pieces(self, segments: list[list[int]]) -> list[str]:
        """Text of each run of text tokens, such that the pieces concatenate to the decoded whole.

        Decoded one by one when that concatenates right (the common case: one batch, n tokens);
        otherwise by growing prefixes (n^2 / chunk tokens), each piece taking the part of the whole
        that its prefix settles, so a character cut in two goes to the piece that completes it.
        """
        text_ids = [token for segment in segments for token in segment]
        decoded = self._tokenizer.decode_batch([*segments, text_ids], skip_special_tokens=False)
        full = decoded.pop()
        if "".join(decoded) == full:
            return decoded
        ends = list(itertools.accumulate(len(segment) for segment in segments))
        prefixes = self._tokenizer.decode_batch([text_ids[:end] for end in ends], skip_special_tokens=False)
        pieces, settled = [], 0
        for end, prefix in zip(ends, prefixes, strict=True):
            reach = len(full) if end == len(text_ids) else max(settled, _common_prefix_length(prefix, full))
            pieces.append(full[settled:reach])
            settled = reach
        return pieces


def parse_speech_tokens(value: object) -> list[int] | None:
    """GLM-4-Voice speech tokens given as a list of N, or as the text `<|audio_N|><|audio_M|>...`;
    None when `value` is neither."""
    if isinstance(value, list) and all(
        isinstance(token, int) and not isinstance(token, bool) for token in value
    ):
        return value if all(token >= 0 for token in value) else None
    if isinstance(value, str) and SPEECH_TOKENS_PATTERN.sub("", value).strip() == "":
        return [int(number) for number in SPEECH_TOKENS_PATTERN.findall(value)]
    return None


def _common_prefix_length(left: str, right: str) -> int:
    if right.startswith(left):
        return len(left)
    length = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        length += 1
    return length
