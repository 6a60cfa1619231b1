"""The files training tools read: LLaMA-Factory sharegpt (SFT and ranking) and TRL preference rows.

LLaMA-Factory (data/README.md, `SharegptDatasetConverter`), with the OpenAI-style tags:

    SFT      {"messages": [{"role": "system", ...}?, {"role": "user", "content": "<audio>..."},
                           {"role": "assistant", "content": "..."}], "audios": ["/path/q.wav"]}
    ranking  {"messages": [{"role": "user", "content": "<audio>"}],
              "chosen": {"role": "assistant", "content": "..."},
              "rejected": {"role": "assistant", "content": "..."}, "audios": ["/path/q.wav"]}

Each file is registered in the `dataset_info.json` of its directory (formatting sharegpt, columns,
tags, and `"ranking": true` for pairs), merged with the entries already there, so one directory can
be LLaMA-Factory's `dataset_dir` for every dataset built into it. Audio paths are absolute: LLaMA-
Factory joins them to its `media_dir`, which leaves an absolute path unchanged.

TRL (conversational preference with explicit prompt): {"prompt": [{"role": "user", ...}],
"chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}]}.

Every row is checked against its format's rules (those LLaMA-Factory's converter enforces by
silently skipping the sample: role order, message count parity, one `<audio>` per audio file) before
it is written: a broken row is a bug here, and it fails loudly instead of vanishing from training.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

AUDIO_PLACEHOLDER = "<audio>"
DATASET_INFO = "dataset_info.json"
_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}

Row = dict[str, Any]


class FormatViolation(AssertionError):
    """A row that its training tool would reject or silently skip; raised before it is written."""


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def sharegpt_sft(user: str, assistant: str, audios: list[str], *, system: str | None = None) -> Row:
    messages = [_message("system", system)] if system else []
    messages += [_message("user", user), _message("assistant", assistant)]
    row = {"messages": messages, "audios": audios}
    check_sharegpt(row, ranking=False)
    return row


def sharegpt_ranking(user: str, chosen: str, rejected: str, audios: list[str]) -> Row:
    row = {
        "messages": [_message("user", user)],
        "chosen": _message("assistant", chosen),
        "rejected": _message("assistant", rejected),
        "audios": audios,
    }
    check_sharegpt(row, ranking=True)
    return row


def trl_preference(prompt: str, chosen: str, rejected: str) -> Row:
    row = {
        "prompt": [_message("user", prompt)],
        "chosen": [_message("assistant", chosen)],
        "rejected": [_message("assistant", rejected)],
    }
    check_trl_preference(row)
    return row


def dataset_info_entry(file_name: str, *, ranking: bool) -> Row:
    columns = {"messages": "messages", "audios": "audios"}
    if ranking:
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    entry: Row = {"file_name": file_name, "formatting": "sharegpt"}
    if ranking:
        entry["ranking"] = True
    return entry | {"columns": columns, "tags": dict(_TAGS)}


def register_dataset(directory: Path, name: str, entry: Row) -> Path:
    """Add or replace `name` in the directory's dataset_info.json, keeping the other entries."""
    path = directory / DATASET_INFO
    info: Row = json.loads(path.read_text()) if path.is_file() else {}
    info[name] = entry
    with atomic_text(path) as stream:
        stream.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def check_sharegpt(row: Row, *, ranking: bool) -> None:
    """LLaMA-Factory's sharegpt rules: user/assistant alternate from the first non-system message; an
    SFT sample ends with the assistant, a ranking prompt with the user; one `<audio>` per audio."""
    messages = row.get("messages")
    _require(isinstance(messages, list) and messages, "messages must be a non-empty list")
    for message in messages:
        _check_message(message)
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        _require(message["role"] == expected, f"message {index} must be {expected}, not {message['role']}")
    _require(len(turns) % 2 == (1 if ranking else 0), "wrong number of messages for this kind of sample")
    text = "".join(message["content"] for message in messages)
    if ranking:
        for key in ("chosen", "rejected"):
            _check_message(row.get(key))
            _require(row[key]["role"] == "assistant", f"{key} must be an assistant message")
            text += row[key]["content"]
    audios = row.get("audios")
    _require(isinstance(audios, list) and all(isinstance(a, str) and a for a in audios), "bad audios")
    _require(text.count(AUDIO_PLACEHOLDER) == len(audios), "one <audio> placeholder per audio file")


def check_trl_preference(row: Row) -> None:
    """TRL's conversational preference type: exactly prompt/chosen/rejected, each a message list."""
    _require(set(row) == {"prompt", "chosen", "rejected"}, f"unexpected columns {sorted(row)}")
    for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
        messages = row[key]
        _require(isinstance(messages, list) and messages, f"{key} must be a non-empty message list")
        for message in messages:
            _check_message(message)
        _require(messages[-1]["role"] == role, f"{key} must end with a {role} message")


def check_dataset_info(entry: Row, row: Row) -> None:
    """The entry names columns the rows have, with the tags the rows use."""
    _require(entry.get("formatting") == "sharegpt", "formatting must be sharegpt")
    ranking = bool(entry.get("ranking", False))
    _require(set(entry["columns"].values()) <= set(row), "dataset_info names a column the rows lack")
    _require(("chosen" in entry["columns"]) == ranking, "ranking entries (only) name chosen/rejected")
    _require(entry["tags"] == _TAGS, "tags must be the role/content ones the rows use")


def _check_message(message: object) -> None:
    _require(
        isinstance(message, dict)
        and set(message) == {"role", "content"}
        and all(isinstance(value, str) for value in message.values()),
        f"a message is {{'role': str, 'content': str}}, not {message!r:.80}",
    )


def _require(condition: object, message: str) -> None:
    if not condition:
        raise FormatViolation(message)


class JsonlWriter:
    """JSON lines, each row checked by `check` first."""

    def __init__(self, stream: IO[str], check: Callable[[Row], None]) -> None:
        self._stream = stream
        self._check = check
        self.rows = 0

    def write(self, row: Row) -> None:
        self._check(row)
        self._stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1


@contextmanager
def llamafactory_file(directory: Path, name: str, *, ranking: bool) -> Iterator[JsonlWriter]:
    """`directory/name.jsonl`, registered as `name` in the directory's dataset_info.json once complete."""
    entry = dataset_info_entry(f"{name}.jsonl", ranking=ranking)
    with atomic_text(directory / entry["file_name"]) as stream:
        yield JsonlWriter(stream, lambda row: check_dataset_info(entry, row))
    register_dataset(directory, name, entry)


@contextmanager
def trl_file(path: Path) -> Iterator[JsonlWriter]:
    with atomic_text(path) as stream:
        yield JsonlWriter(stream, check_trl_preference)


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A file that appears complete or not at all: written aside, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yield stream
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
