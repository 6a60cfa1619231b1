"""Training sets built from scored runs: ReEmpathy interleaved data, its baselines, judge SFT data.

    run items + results (SQL, streamed) ──▶ texts (meta / side file) ──▶ tokens ──▶ interleave ──▶ text
                                                                                   ──▶ LLaMA-Factory JSONL

ReEmpathy (`variant="reempathy"`): the user turn is the spoken query (`<audio>`), the assistant turn
is r1 f1 r2 f2 ... where r are response chunks (transcript, or text + speech tokens 13:26) and f are
chunks of the reflection, each wrapped in the start/end markers. The reflection is the run's
assessment without its final `SCORES:` line: the reasoning is what the dialogue model should learn to
think; the numbers are the judge's verdict about it. Baselines: `cotbs` (the whole marked reflection,
then the response) and `plain` (the response alone, i.e. SFT). All three variants take the same
items (those with an assessment and a response transcript), so their datasets compare like for like;
only the `drop` policy leaves out more.

Judge SFT (`build_judge_sft`): (query audio, response audio) -> the assessment, in the judge's own
prompt (system text and instruction of `evalsvc.engine.prompt`), to fine-tune the judge further.

Every builder streams: rows are read `STREAM_BATCH` at a time, tokenized `BATCH` at a time, and
written as they go; only a 16-byte digest per written pair is kept, to drop duplicates (the same
audio pair in two runs, or twice in one).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy.orm import Session

from evalsvc.engine.prompt import INSTRUCTION_TEXT, SYSTEM_TEXT, parse_score_line
from evalsvc.engine.types import Scores
from evalsvc.errors import InvalidParameter
from evalsvc.training.codec import TokenCodec
from evalsvc.training.formats import AUDIO_PLACEHOLDER, llamafactory_file, sharegpt_sft
from evalsvc.training.interleave import (
    GLM_SPEECH_BLOCK,
    GLM_TEXT_BLOCK,
    Interleaving,
    Outcome,
    Policy,
    interleave,
    reflection_first,
    response_only,
    speech_text_stream,
)
from evalsvc.training.sources import ItemRow, stream_items
from evalsvc.training.texts import ItemTexts, TextSource

Variant = Literal["reempathy", "cotbs", "plain"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
BATCH = 256
JUDGE_USER_TEXT = f"User query: {AUDIO_PLACEHOLDER}\nSystem response: {AUDIO_PLACEHOLDER}\n{INSTRUCTION_TEXT}"
T = TypeVar("T")


@dataclass(frozen=True)
class InterleaveOptions:
    variant: Variant = "reempathy"
    response_chunk: int = 15
    reflection_chunk: int = 15
    policy: Policy = "append"
    start_marker: str = "<reflection>"
    end_marker: str = "</reflection>"


@dataclass
class BuildReport:
    """What a build wrote and what it left out, with why; `outcomes` counts what the chunk-count
    policy did (ReEmpathy only: the baselines do not chunk)."""

    written: dict[str, int] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"written": self.written, "dropped": dict(sorted(self.dropped.items()))}
        if self.outcomes:
            payload["interleaving"] = dict(sorted(self.outcomes.items()))
        return payload


class Deduper:
    """Remembers a 16-byte digest per key seen: duplicates of 100,000 rows cost ~10 MB, not the rows."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def first(self, *parts: str | None) -> bool:
        digest = hashlib.blake2b("\x1f".join(part or "" for part in parts).encode(), digest_size=16).digest()
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True


def check_name(name: str) -> str:
    """Dataset names become file names and dataset_info.json keys: letters, digits, `_ . -` only."""
    if not name or not all(char.isalnum() or char in "_.-" for char in name) or name.startswith("."):
        raise InvalidParameter(f"dataset name {name!r} must be letters, digits, '_', '.' or '-'")
    return name


def reflection_text(assessment: str) -> str:
    """The assessment without a final `SCORES:` line (kept when it is not a valid score line)."""
    lines = assessment.rstrip().splitlines()
    if lines and isinstance(parse_score_line(lines[-1]), Scores):
        lines = lines[:-1]
    return "\n".join(lines).strip()


def response_stream(codec: TokenCodec, text_ids: Sequence[int], texts: ItemTexts) -> list[int]:
    """The response as the dialogue model emits it: text ids, or text and speech 13:26 (GLM-4-Voice)."""
    if not texts.response_speech_tokens:
        return list(text_ids)
    speech = codec.speech_ids(texts.response_speech_tokens)
    return speech_text_stream(text_ids, speech, GLM_TEXT_BLOCK, GLM_SPEECH_BLOCK)


def arrange(options: InterleaveOptions, response: Sequence[int], reflection: Sequence[int]) -> Interleaving:
    if options.variant == "cotbs":
        return reflection_first(response, reflection)
    if options.variant == "plain":
        return response_only(response)
    return interleave(
        response,
        reflection,
        response_chunk=options.response_chunk,
        reflection_chunk=options.reflection_chunk,
        policy=options.policy,
    )


def render(codec: TokenCodec, layout: Interleaving, options: InterleaveOptions) -> str:
    """The assistant turn: chunks in order, reflection chunks between the markers."""
    texts = {
        stream: iter(codec.render_chunks([chunk.tokens for chunk in layout.chunks if chunk.stream == stream]))
        for stream in ("response", "reflection")
    }
    parts = []
    for chunk in layout.chunks:
        text = next(texts[chunk.stream])
        parts.append(
            f"{options.start_marker}{text}{options.end_marker}" if chunk.stream == "reflection" else text
        )
    return "".join(parts)


def build_interleaved(
    session: Session,
    run_ids: Sequence[int],
    *,
    codec: TokenCodec,
    texts: TextSource,
    options: InterleaveOptions,
    out_dir: Path,
    name: str,
) -> BuildReport:
    """ReEmpathy / CoTBS / plain SFT data of the runs as LLaMA-Factory sharegpt with audio."""
    report, seen = BuildReport(), Deduper()
    with llamafactory_file(out_dir, check_name(name), ranking=False) as writer:
        for batch in batches(stream_items(session, run_ids), BATCH):
            admitted: list[tuple[ItemRow, ItemTexts, str]] = []
            for item in batch:
                found = _admit(item, texts, report, seen)
                if found is not None:
                    admitted.append((item, *found))
            encoded = codec.encode(
                [t.response_transcript or "" for _, t, _ in admitted] + [r for _, _, r in admitted]
            )
            for index, (item, item_texts, _) in enumerate(admitted):
                response = response_stream(codec, encoded[index], item_texts)
                layout = arrange(options, response, encoded[len(admitted) + index])
                if options.variant == "reempathy":
                    report.outcomes[layout.outcome] += 1
                if layout.outcome == Outcome.DROPPED:
                    report.dropped["chunk_counts_differ"] += 1
                    continue
                writer.write(
                    sharegpt_sft(AUDIO_PLACEHOLDER, render(codec, layout, options), [item.query_ref])
                )
        report.written[f"{name}.jsonl"] = writer.rows
    return report


def _admit(
    item: ItemRow, texts: TextSource, report: BuildReport, seen: Deduper
) -> tuple[ItemTexts, str] | None:
    """(texts, reflection) of a usable item; otherwise None, with the reason counted."""
    if not item.assessment:
        report.dropped["no_assessment"] += 1
        return None
    item_texts = texts.texts(item.item_key, item.meta)
    reflection = reflection_text(item.assessment)
    if not item_texts.response_transcript:
        reason = "no_response_transcript"
    elif not reflection:
        reason = "empty_reflection"
    elif not seen.first(item.query_sha256, item.response_sha256):
        reason = "duplicate"
    else:
        return item_texts, reflection
    report.dropped[reason] += 1
    return None


def build_judge_sft(session: Session, run_ids: Sequence[int], *, out_dir: Path, name: str) -> BuildReport:
    """(query audio, response audio) -> assessment rows in the judge's prompt, for LLaMA-Factory.

    An assessment without a valid final score line is left out: trained on, it would teach the judge
    to forget the line its score parser needs.
    """
    report, seen = BuildReport(), Deduper()
    with llamafactory_file(out_dir, check_name(name), ranking=False) as writer:
        for item in stream_items(session, run_ids):
            if not item.assessment:
                report.dropped["no_assessment"] += 1
            elif not isinstance(parse_score_line(item.assessment), Scores):
                report.dropped["no_score_line"] += 1
            elif not seen.first(item.query_sha256, item.response_sha256):
                report.dropped["duplicate"] += 1
            else:
                audios = [item.query_ref, item.response_ref]
                writer.write(
                    sharegpt_sft(JUDGE_USER_TEXT, item.assessment.strip(), audios, system=SYSTEM_TEXT)
                )
        report.written[f"{name}.jsonl"] = writer.rows
    return report


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
