"""Scored runs with assessments and transcripts, written through the store's own functions.

The training-data tests compute what they expect from these `Pair`s, never from the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsvc.store import (
    RunItemSpec,
    Store,
)
from tests.store.factories import SeededItem, seed_run

ASSESSMENT = (
    "The user sounds exhausted and lonely; they need to feel heard before any advice. "
    "The response acknowledges the feeling warmly, but moves to suggestions a little fast. "
    "It could ask what would help most right now."
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def score_line(scores: Sequence[float]) -> str:
    return "SCORES: NS={:g} WA={:g} EU={:g} ES={:g}".format(*scores)


@dataclass(frozen=True)
class Pair:
    """One run item: `query`/`response` name the audio (their sha256 is derived from the names)."""

    key: str
    query: str
    response: str
    scores: tuple[float, float, float, float] | None = None
    assessment: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    system: str = "sys-a"

    @property
    def avg(self) -> float | None:
        return None if self.scores is None else sum(self.scores) / 4


def transcript_meta(text: str, **more: Any) -> dict[str, Any]:
    return {"response_transcript": text, **more}


def add_scored_run(
    store: Store,
    pairs: Sequence[Pair],
    *,
    judge: str = "judge-1",
    name: str = "run",
    audio_dir: str = "/audio",
) -> int:
    """A run of `pairs` in mode `both`, their audio named `audio_dir/NAME.wav`; pairs without scores
    stay pending."""
    seeded = [
        SeededItem(
            RunItemSpec(
                item_key=pair.key,
                query_ref=f"{audio_dir}/{pair.query}.wav",
                response_ref=f"{audio_dir}/{pair.response}.wav",
                system=pair.system,
                meta=pair.meta,
            ),
            sha(pair.query),
            sha(pair.response),
            pair.scores,
            assessment=pair.assessment,
        )
        for pair in pairs
    ]
    return seed_run(store, seeded, mode="both", name=name, judge=judge)


class Rejected(AssertionError):
    """A row the training tool would refuse or silently skip."""


def llamafactory_convert(row: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """What LLaMA-Factory's `SharegptDatasetConverter` makes of `row` under its dataset_info `entry`
    (its defaults where the entry says nothing), raising `Rejected` where it would skip the sample;
    then its multimodal check: one `<audio>` per audio file."""
    columns, tags = entry.get("columns", {}), entry.get("tags", {})
    role, content = tags.get("role_tag", "from"), tags.get("content_tag", "value")
    user, assistant = tags.get("user_tag", "human"), tags.get("assistant_tag", "gpt")
    system_tag = tags.get("system_tag", "system")
    odd, even = (
        (user, tags.get("observation_tag", "observation")),
        (assistant, tags.get("function_tag", "function_call")),
    )
    ranking = bool(entry.get("ranking", False))
    if entry.get("formatting") != "sharegpt":
        raise Rejected("not a sharegpt entry")
    messages = row[columns.get("messages", "conversations")]
    system = ""
    if messages and messages[0][role] == system_tag:
        system, messages = messages[0][content], messages[1:]
    for index, message in enumerate(messages):
        if message[role] not in (odd, even)[index % 2]:
            raise Rejected(f"invalid role tag at {index}")
    if len(messages) % 2 != (1 if ranking else 0):
        raise Rejected("invalid message count")
    if ranking:
        chosen, rejected = row[columns["chosen"]], row[columns["rejected"]]
        if not (isinstance(chosen, dict) and isinstance(rejected, dict)):
            raise Rejected("chosen/rejected must be message objects")
        if chosen[role] not in even or rejected[role] not in even:
            raise Rejected("chosen/rejected must be assistant messages")
        prompt, response = messages, [chosen, rejected]
    else:
        prompt, response = messages[:-1], messages[-1:]
    audios = row[columns["audios"]]
    placeholders = sum(message[content].count("<audio>") for message in [*prompt, *response])
    if placeholders != len(audios):
        raise Rejected(f"{placeholders} <audio> placeholders for {len(audios)} audios")
    return {"prompt": prompt, "response": response, "system": system, "audios": audios}


def trl_check_preference(row: dict[str, Any]) -> None:
    """TRL's conversational preference type: prompt/chosen/rejected lists of role/content messages,
    the prompt ending with the user, the completions being the assistant's."""
    if set(row) != {"prompt", "chosen", "rejected"}:
        raise Rejected(f"columns {sorted(row)}")
    for key in ("prompt", "chosen", "rejected"):
        if not row[key] or any(set(message) != {"role", "content"} for message in row[key]):
            raise Rejected(f"{key} is not a list of messages")
    if row["prompt"][-1]["role"] != "user":
        raise Rejected("the prompt must end with the user")
    if any(message["role"] != "assistant" for message in row["chosen"] + row["rejected"]):
        raise Rejected("completions must be assistant messages")


# GLM-4's special tokens (THUDM glm-4-9b-chat tokenizer_config.json, ids 151329...) plus GLM-4-Voice's
# audio markers; GLM-4-Voice adds the 16,384 speech tokens <|audio_0|> ... <|audio_16383|>.
GLM4_SPECIAL_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_audio|>", "<|end_of_audio|>",
)  # fmt: skip


def glm4_voice_tokenizer(directory: Path) -> Path:
    """A small stand-in for GLM-4-Voice's tokenizer, saved in `directory`: byte-level BPE on a few
    sentences, with GLM-4's special tokens and all 16,384 speech tokens as single tokens, which is
    what LLaMA-Factory's `glm4` template and the rows' markup rely on (the real one has a 151k-token
    text vocabulary and cannot be downloaded here)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(GLM4_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([ASSESSMENT, "I'm so sorry. Losing a job hurts."], trainer=trainer)
    tokenizer.add_tokens([f"<|audio_{index}|>" for index in range(16_384)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|user|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(directory)
    return directory
