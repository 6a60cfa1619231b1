"""Where the transcripts and speech tokens of an item come from: its `meta`, or a side file.

The judge stores audio and scores, not what was said, so the words (and GLM-4-Voice speech tokens) of
a pair come with the data, under these keys:

    query_transcript         what the user said (text)
    query_speech_tokens      the query as GLM-4-Voice speech tokens
    response_transcript      what the system said (text)
    response_speech_tokens   the response as GLM-4-Voice speech tokens (12.5 Hz)

Speech tokens are a JSON list of integers N >= 0, or a string of `<|audio_N|>` tokens.

1. In the manifest: the row's `meta` object (kept on the run item), e.g.
   `"meta": {"response_transcript": "I'm so sorry...", "response_speech_tokens": [812, 77, ...]}`.
2. In a side file (`--texts FILE`): JSON lines, one object per item with its manifest `id` and any of
   the keys above. A key given there wins over the same key in `meta`; so a transcription made after
   the run needs no new run. The file is indexed once (id -> byte offset) and each line is read when
   its item comes, so a side file with 100,000 responses' speech tokens is never held in memory.

A value of the wrong type is an error naming the item and the key, not a silently skipped item; a key
that is absent is simply unknown (the item is then dropped with a counted reason where it is needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from evalsvc.errors import InvalidParameter
from evalsvc.training.codec import parse_speech_tokens

TEXT_KEYS = ("query_transcript", "query_speech_tokens", "response_transcript", "response_speech_tokens")


@dataclass(frozen=True)
class ItemTexts:
    query_transcript: str | None = None
    query_speech_tokens: list[int] | None = None
    response_transcript: str | None = None
    response_speech_tokens: list[int] | None = None


def parse_texts(where: str, values: Mapping[str, Any]) -> ItemTexts:
    """The four keys of `values`, validated; `where` names the item in error messages."""
    found: dict[str, Any] = {}
    for key in TEXT_KEYS:
        value = values.get(key)
        if value is None:
            continue
        if key.endswith("_transcript"):
            if not isinstance(value, str):
                raise InvalidParameter(f"{where}: {key} must be a string, got {type(value).__name__}")
            found[key] = value
            continue
        tokens = parse_speech_tokens(value)
        if tokens is None:
            raise InvalidParameter(
                f"{where}: {key} must be a list of integers >= 0 or a string of <|audio_N|> tokens "
                f"(GLM-4-Voice speech tokens), got {json.dumps(value)[:80]}"
            )
        found[key] = tokens
    return ItemTexts(**found)


class TextSource:
    """Texts of items by key: `meta` overridden key by key by the side file, when one is given."""

    def __init__(self, side_file: Path | None = None) -> None:
        self._path = side_file
        self._offsets: dict[str, int] = {}
        self._file: BinaryIO | None = None
        if side_file is not None:
            self._file = self._open(side_file)
            try:
                self._offsets = self._index(self._file, side_file)
            except InvalidParameter:
                self._file.close()
                raise

    def __enter__(self) -> TextSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def texts(self, item_key: str, meta: object) -> ItemTexts:
        if meta is not None and not isinstance(meta, Mapping):
            raise InvalidParameter(
                f"item {item_key!r}: meta must be a JSON object, not {type(meta).__name__}"
            )
        values = dict(meta or {})
        offset = self._offsets.get(item_key)
        if offset is not None and self._file is not None:
            self._file.seek(offset)
            values.update(json.loads(self._file.readline()))
            return parse_texts(f"item {item_key!r} ({self._path} and meta)", values)
        return parse_texts(f"item {item_key!r} (meta)", values)

    @staticmethod
    def _open(path: Path) -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as error:
            raise InvalidParameter(f"cannot read the texts file {path}: {error.strerror}") from error

    @staticmethod
    def _index(file: BinaryIO, path: Path) -> dict[str, int]:
        """id -> byte offset of its line; every line is checked here, so a bad file fails at once."""
        offsets: dict[str, int] = {}
        offset = 0
        for number, line in enumerate(file, start=1):
            where = f"{path} line {number}"
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise InvalidParameter(f"{where}: not valid JSON ({error})") from error
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    raise InvalidParameter(f"{where}: expected a JSON object with a string 'id'")
                if row["id"] in offsets:
                    raise InvalidParameter(f"{where}: id {row['id']!r} appears twice")
                parse_texts(where, row)
                offsets[row["id"]] = offset
            offset += len(line)
        return offsets
