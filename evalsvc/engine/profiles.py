"""Model profiles: which Qwen3-Omni checkpoint judges, and how.

| profile | checkpoint | what it is |
|---|---|---|
| `empathyeval` | Qwen3-Omni-30B-A3B-Captioner + the EmpathyEval LoRA adapter (+ heads), or a checkpoint with that adapter merged in | the paper's judge |
| `zero-shot` | Qwen3-Omni-30B-A3B-Instruct | the paper's zero-shot baseline: the same prompt, no fine-tuning |
| `zero-shot-thinking` | Qwen3-Omni-30B-A3B-Thinking | zero-shot; its reasoning (`<think>...</think>`) is removed from the assessment |
| `tiny` | the built-in random model | plumbing only; its outputs are noise |

The Captioner alone is refused: it is documented as audio-only (no text instruction, no system
message, single turn), so without the EmpathyEval adapter it captions the audio and ignores the judge
prompt; every assessment would be a caption and every text score missing.

`auto` detects the profile, in this order: a local directory's `evalsvc.json` (`{"profile": "..."}`:
the built-in tiny model has one, and so can a merged or renamed checkpoint); the checkpoint's name, which for a hub id
is its repository name, and for a local directory is the directory's name (or the repository name of
a hub cache snapshot, `models--Qwen--NAME/snapshots/REV`), matched on Captioner, Thinking or
Instruct. Names are what the published checkpoints can be told apart by: Captioner and Thinking
share their config (thinker only, no talker). A checkpoint that matches nothing must be named with
`EVALSVC_MODEL_PROFILE`.

Kept free of torch: the fingerprint (and with it the cache) depends on the profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evalsvc.errors import ModelLoadError, ModelNotAJudge
from evalsvc.settings import PROFILES

PROFILE_FILE = "evalsvc.json"
THINK_END = "</think>"


@dataclass(frozen=True)
class ModelProfile:
    name: str
    default_max_new_tokens: int
    strips_thinking: bool = False


# Enough for an assessment (intent, need, suggestions: a few hundred tokens) and its score line, with
# room to spare; the Thinking model writes its reasoning first, often thousands of tokens.
_PROFILES = {
    "empathyeval": ModelProfile("empathyeval", default_max_new_tokens=1024),
    "zero-shot": ModelProfile("zero-shot", default_max_new_tokens=1024),
    "zero-shot-thinking": ModelProfile(
        "zero-shot-thinking", default_max_new_tokens=4096, strips_thinking=True
    ),
    # Its text is noise: a short limit keeps `make demo` quick.
    "tiny": ModelProfile("tiny", default_max_new_tokens=256),
}
assert set(_PROFILES) == set(PROFILES) - {"auto"}
_NAMED = (("captioner", "empathyeval"), ("thinking", "zero-shot-thinking"), ("instruct", "zero-shot"))


def profile_named(name: str) -> ModelProfile:
    return _PROFILES[name]


def resolve_profile(configured: str, model: str, *, has_adapter: bool) -> ModelProfile:
    """The profile `model` (hub id or local directory) judges with; refuses the Captioner without
    its adapter."""
    if configured != "auto":
        return _PROFILES[configured]
    marker = Path(model).expanduser() / PROFILE_FILE
    if marker.is_file():
        return _PROFILES[_profile_from_file(marker)]
    checkpoint = checkpoint_name(model)
    for marker, name in _NAMED:
        if marker in checkpoint.lower():
            if name == "empathyeval" and not has_adapter:
                raise ModelNotAJudge(
                    f"{checkpoint} is the Qwen3-Omni Captioner, which is audio-only (no text instruction, no "
                    "system message): without the EmpathyEval LoRA adapter it captions the audio and ignores "
                    "the judge prompt, so it cannot judge. Give the EmpathyEval adapter (--adapter, with its "
                    "--heads), or use the zero-shot judge --model Qwen/Qwen3-Omni-30B-A3B-Instruct (or "
                    "-Thinking). A checkpoint with the adapter merged in: --profile empathyeval."
                )
            return _PROFILES[name]
    raise ModelLoadError(
        f"cannot tell which Qwen3-Omni checkpoint {model!r} is from its name ({checkpoint!r} names none of "
        "Captioner, Instruct, Thinking); set --profile (EVALSVC_MODEL_PROFILE) to empathyeval, zero-shot or "
        f'zero-shot-thinking, or write {PROFILE_FILE} with {{"profile": "..."}} into the directory'
    )


def checkpoint_name(model: str) -> str:
    """The name that says which checkpoint this is: hub repository, directory, or snapshot's repository."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return model.rsplit("/", 1)[-1]
    resolved = path.resolve()
    if resolved.parent.name == "snapshots" and resolved.parent.parent.name.startswith("models--"):
        return resolved.parent.parent.name.rsplit("--", 1)[-1]
    return resolved.name


def strip_thinking(text: str) -> str:
    """The answer after the Thinking model's reasoning; unfinished reasoning leaves no answer.

    The reasoning ends at the last `</think>`; text without it is all reasoning when it starts with
    `<think>` (generation was cut before the answer), else it is all answer.
    """
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1].strip()
    if text.lstrip().startswith("<think>"):
        return ""
    return text


def _profile_from_file(path: Path) -> str:
    try:
        name = json.loads(path.read_text())["profile"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f'{path} must be JSON like {{"profile": "empathyeval"}}: {error}') from error
    if name not in _PROFILES:
        raise ModelLoadError(f"{path} names profile {name!r}; known: {', '.join(_PROFILES)}")
    return str(name)
