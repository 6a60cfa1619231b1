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
   the run needs no new run. The file is checked whole first, like a manifest: a line that is not
   JSON, an unknown key (`response_transcipt`), a repeated id, or an id that matches no item of the
   runs (`check_ids`) is a problem reported with its line, and nothing is built. The file is indexed once (id -> byte offset) and each line is read when
   its item comes, so a side file with 100,000 responses' speech tokens is never held in memory.
3. Stored transcripts (`stored`): a transcript the LLM judges made of the clip (evalsvc.judges, Whisper,
   stored per audio sha256) fills `query_transcript` / `response_transcript` when neither the side
   file nor `meta` gives it; so a run judged by an LLM judge, or a clip any LLM judge transcribed,
   needs no transcripts by hand.

A value of the wrong type is an error naming the item and the key, not a silently skipped item; a key
that is absent is simply unknown (the item is then dropped with a counted reason where it is needed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from evalsvc.errors import InvalidParameter, TextsInvalid
from evalsvc.suggest import unknown_names
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


StoredTranscript = Callable[[str], str | None]
"""A clip's stored transcript by its audio sha256 (None when there is none)."""


class TextSource:
    """Texts of items by key: `meta` overridden key by key by the side file, when one is given; stored
    transcripts for the transcripts neither gives."""

    def __init__(self, side_file: Path | None = None, stored: StoredTranscript | None = None) -> None:
        self._stored = stored
        self._path = side_file
        self._rows: dict[str, tuple[int, int]] = {}  # id -> (byte offset, line number) of its row
        self._file: BinaryIO | None = None
        self._problems: list[tuple[int, str]] = []
        if side_file is not None:
            self._file = self._open(side_file)
            self._index(self._file)

    def __enter__(self) -> TextSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def texts(
        self, item_key: str, meta: object, audio: tuple[str | None, str | None] = (None, None)
    ) -> ItemTexts:
        """`audio`: the item's (query, response) audio sha256, to find stored transcripts by."""
        if self._problems:
            raise texts_invalid(self._path, self._problems)
        if meta is not None and not isinstance(meta, Mapping):
            raise InvalidParameter(
                f"item {item_key!r}: meta must be a JSON object, not {type(meta).__name__}"
            )
        values = dict(meta or {})
        where = f"item {item_key!r} (meta)"
        row = self._rows.get(item_key)
        if row is not None and self._file is not None:
            self._file.seek(row[0])
            values.update(json.loads(self._file.readline()))
            where = f"item {item_key!r} ({self._path} and meta)"
        if self._stored is not None:
            for key, sha256 in zip(("query_transcript", "response_transcript"), audio, strict=True):
                if values.get(key) is None and sha256 is not None:
                    values[key] = self._stored(sha256)
        return parse_texts(where, values)

    @staticmethod
    def _open(path: Path) -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as error:
            raise InvalidParameter(f"cannot read the texts file {path}: {error.strerror}") from error

    def unmatched(self, item_keys: Iterable[str]) -> list[tuple[int, str]]:
        """(line, problem) for each id of the side file that names no item of the runs: a typo, or
        texts of other runs, which would otherwise be silently unused."""
        unmatched = {key: line for key, (_, line) in self._rows.items()}
        if not unmatched:
            return []
        for key in item_keys:
            unmatched.pop(key, None)
            if not unmatched:
                break
        return [(line, f"id {key!r} matches no item of the runs") for key, line in unmatched.items()]

    def check_ids(self, item_keys: Iterable[str]) -> None:
        """Raise `TextsInvalid` listing every problem of the side file, its bad lines and its ids that
        match no item, all at once and in line order, as for a manifest."""
        problems = sorted([*self._problems, *self.unmatched(item_keys)])
        if problems:
            raise texts_invalid(self._path, problems)

    @staticmethod
    def _open(path: Path) -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as error:
            raise InvalidParameter(f"cannot read the texts file {path}: {error.strerror}") from error

    def _index(self, file: BinaryIO) -> None:
        """id -> byte offset and line of each good row; the problems of the others are kept for
        `check_ids` (and `texts` refuses to answer from a file that has any)."""
        offset = 0
        for number, line in enumerate(file, start=1):
            if line.strip():
                problem = self._add(number, offset, line)
                if problem:
                    self._problems.append((number, problem))
            offset += len(line)

    def _add(self, number: int, offset: int, line: bytes) -> str | None:
        """Index one row; what is wrong with it, if anything."""
        try:
            row = json.loads(line)
        except ValueError as error:
            return f"not valid JSON ({error})"
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            return "expected a JSON object with a string 'id'"
        unknown = [key for key in row if key != "id" and key not in TEXT_KEYS]
        if unknown:
            return (
                f"unknown key(s) {unknown_names(unknown, TEXT_KEYS)}; the keys are id, {', '.join(TEXT_KEYS)}"
            )
        if row["id"] in self._rows:
            return f"id {row['id']!r} appears twice (first on line {self._rows[row['id']][1]})"
        try:
            parse_texts(f"id {row['id']!r}", row)
        except InvalidParameter as error:
            return error.message
        self._rows[row["id"]] = (offset, number)
        return None


def texts_invalid(path: Path | None, problems: list[tuple[int, str]]) -> TextsInvalid:
    """The error listing every problem line of a side file, the first three in its message."""
    shown = "; ".join(f"line {line}: {message}" for line, message in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return TextsInvalid(
        f"the texts file {path} has {len(problems)} problem line(s): {shown}{more}; nothing was built",
        problems,
    )
