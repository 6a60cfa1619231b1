"""The files training tools read: LLaMA-Factory sharegpt (SFT and ranking) and TRL preference rows.

LLaMA-Factory (data/README.md, `SharegptDatasetConverter`), with the OpenAI-style tags:

    SFT      {"messages": [{"role": "system", ...}?, {"role": "user", "content": "<audio>..."},
                           {"role": "assistant", "content": "..."}], "audios": ["/path/q.wav"]}
    ranking  {"messages": [{"role": "user", "content": "<audio>"}],
              "chosen": {"role": "assistant", "content": "..."},
              "rejected": {"role": "assistant", "content": "..."}, "audios": ["/path/q.wav"]}

Each file is registered in the `dataset_info.json` of its directory (formatting sharegpt, columns,
tags, and `"ranking": true` for pairs), merged with the entries already there, so one directory can
be LLaMA-Factory's `dataset_dir` for every dataset built into it. Audio paths are relative to that
directory (`AudioPaths`), which is LLaMA-Factory's default `media_dir`, or to `--audio-root` (then
given as `media_dir`): a dataset directory moved to another machine with its audio keeps working.
Rows for GLM-4-Voice (`QueryFormat` "glm4-voice") carry the query as speech tokens and have no
`audios` column.

Files appear whole or not at all (`atomic_text`) with the permissions `open()` would give them.

TRL (conversational preference with explicit prompt): {"prompt": [{"role": "user", ...}],
"chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}]}.

Every row is checked against its format's rules (those LLaMA-Factory's converter enforces by
silently skipping the sample: role order, message count parity, one `<audio>` per audio file) before
it is written: a broken row is a bug here, and it fails loudly instead of vanishing from training.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, get_args

from evalsvc.errors import InvalidParameter
from evalsvc.training.glm4voice import LLAMAFACTORY_TEMPLATE as GLM4_VOICE_TEMPLATE

QueryFormat = Literal["audio", "glm4-voice"]
QUERY_FORMATS: tuple[QueryFormat, ...] = get_args(QueryFormat)
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
    """An SFT row; without audio files (GLM-4-Voice rows) it has no `audios` column at all."""
    messages = [_message("system", system)] if system else []
    messages += [_message("user", user), _message("assistant", assistant)]
    row: Row = {"messages": messages} | ({"audios": audios} if audios else {})
    check_sharegpt(row, ranking=False)
    return row


def sharegpt_ranking(
    user: str, chosen: str, rejected: str, audios: list[str], *, system: str | None = None
) -> Row:
    messages = [_message("system", system)] if system else []
    row: Row = {
        "messages": [*messages, _message("user", user)],
        "chosen": _message("assistant", chosen),
        "rejected": _message("assistant", rejected),
    } | ({"audios": audios} if audios else {})
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


@dataclass(frozen=True)
class AudioPaths:
    """How rows name audio files: relative to `base`, the dataset directory by default (LLaMA-Factory's
    default `media_dir`), or the `--audio-root` the user will give as `media_dir`."""

    base: Path
    explicit: bool = False

    @classmethod
    def of(cls, directory: Path, root: Path | None = None) -> AudioPaths:
        return cls(root.resolve(), True) if root is not None else cls(directory.resolve())

    def __call__(self, ref: str) -> str:
        path = Path(ref)
        if self.explicit and not path.is_relative_to(self.base):
            raise InvalidParameter(f"audio {ref} is not under --audio-root {self.base}")
        return os.path.relpath(path, self.base)


def dataset_info_entry(file_name: str, *, ranking: bool, audios: bool = True) -> Row:
    columns = {"messages": "messages"} | ({"audios": "audios"} if audios else {})
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
    audios = row.get("audios", [])
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
def llamafactory_file(
    directory: Path, name: str, *, ranking: bool, audios: bool = True
) -> Iterator[JsonlWriter]:
    """`directory/name.jsonl`, registered as `name` in the directory's dataset_info.json once complete
    (when the block raises, neither happens)."""
    entry = dataset_info_entry(f"{name}.jsonl", ranking=ranking, audios=audios)
    with atomic_text(directory / entry["file_name"]) as stream:
        yield JsonlWriter(stream, lambda row: check_dataset_info(entry, row))
    register_dataset(directory, name, entry)


def write_training_entry(
    directory: Path,
    name: str,
    *,
    query_format: QueryFormat,
    markers: tuple[str, ...],
    audio_paths: AudioPaths,
) -> Path:
    """`directory/name.llamafactory.yaml`: the LLaMA-Factory training arguments the rows need, to merge
    into a training config. The reflection markers must be single new special tokens: tokenized as
    plain text they would cost several tokens each and could merge with the words around them.
    LLaMA-Factory 0.9.5 takes them as `add_special_tokens` (comma-separated; earlier releases called
    it `new_special_tokens`) and then resizes the embeddings itself (`resize_vocab`)."""
    for marker in markers:
        if not marker or "," in marker or marker != marker.strip():
            raise InvalidParameter(
                f"marker {marker!r} cannot be a LLaMA-Factory special token: it must be non-empty, "
                "without commas or surrounding spaces"
            )
    lines = [
        f"# LLaMA-Factory arguments for dataset {name}, written by evalsvc: merge them into your training",
        "# config (llamafactory-cli train CONFIG.yaml) beside model_name_or_path, stage, finetuning_type...",
        f"dataset: {json.dumps(name)}",
        f"dataset_dir: {json.dumps(str(directory.resolve()))}",
    ]
    if query_format == "glm4-voice":
        lines.append(
            f"template: {json.dumps(GLM4_VOICE_TEMPLATE)}  # GLM-4-Voice: the query as speech tokens"
        )
    else:
        lines.append(
            "# template: your audio-input model's (e.g. qwen2_omni, qwen3_omni_nothink); rows use <audio>"
        )
        if audio_paths.explicit:
            lines.append(f"media_dir: {json.dumps(str(audio_paths.base))}  # audio paths are relative to it")
    if markers:
        lines.append(f"add_special_tokens: {json.dumps(','.join(dict.fromkeys(markers)))}")
    path = directory / f"{name}.llamafactory.yaml"
    with atomic_text(path) as stream:
        stream.write("\n".join(lines) + "\n")
    return path


@contextmanager
def trl_file(path: Path) -> Iterator[JsonlWriter]:
    with atomic_text(path) as stream:
        yield JsonlWriter(stream, check_trl_preference)


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A file that appears complete or not at all: written aside, then renamed over `path`.

    The file gets the permissions `open(path, "w")` would give it: an existing file keeps its mode, a
    new one gets 0666 less the umask. (`tempfile.mkstemp` makes 0600 files, and the rename would carry
    that over, so a training job running as another user, e.g. in a container, could not read them.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}-{secrets.token_hex(8)}.tmp"
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            if path.exists():
                os.chmod(stream.fileno(), stat.S_IMODE(path.stat().st_mode))
            yield stream
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
