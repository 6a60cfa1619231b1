"""Training sets built from scored runs: ReEmpathy interleaved data, its baselines, judge SFT data.

    run items + results (SQL, streamed) ──▶ texts (meta / side file) ──▶ tokens ──▶ interleave ──▶ text
                                                                                   ──▶ LLaMA-Factory JSONL

ReEmpathy (`variant="reempathy"`): the user turn is the spoken query (`<audio>` and its file, for
audio-input models), or for GLM-4-Voice the query's speech tokens in its own markup
(`evalsvc.training.glm4voice`); the assistant turn is r1 f1 r2 f2 ... where r are response chunks
(transcript, or text + speech tokens 13:26) and f are chunks of the reflection, each wrapped in the
start/end markers. The reflection is the run's
assessment without its final `SCORES:` line: the reasoning is what the dialogue model should learn to
think; the numbers are the judge's verdict about it. Baselines: `cotbs` (the whole marked reflection,
then the response) and `plain` (the response alone, i.e. SFT). All three variants take the same
items (those with an assessment and a response transcript), so their datasets compare like for like;
only the `drop` policy leaves out more. A build that would write no row fails instead
(`NothingToBuild`), naming per reason what was missing; nothing is written or registered then.

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

from evalsvc.engine.prompt import INSTRUCTION_TEXT, SYSTEM_TEXT, parse_score_line, reflection_text
from evalsvc.engine.types import Scores
from evalsvc.errors import InvalidParameter, NothingToBuild
from evalsvc.store.item_streams import ItemRow, item_keys, stream_items
from evalsvc.training.codec import TokenCodec
from evalsvc.training.formats import (
    AUDIO_PLACEHOLDER,
    AudioPaths,
    QueryFormat,
    llamafactory_file,
    sharegpt_sft,
    write_training_entry,
)
from evalsvc.training.glm4voice import GLM4_VOICE_SYSTEM, speech_query
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
from evalsvc.training.texts import ItemTexts, TextSource

Variant = Literal["reempathy", "cotbs", "plain"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
BATCH = 256
JUDGE_USER_TEXT = f"User query: {AUDIO_PLACEHOLDER}\nSystem response: {AUDIO_PLACEHOLDER}\n{INSTRUCTION_TEXT}"
T = TypeVar("T")


# Why items (or, for pairs, queries) were left out, and what the user can supply or change to keep
# them: the message of a build that would write no row (`NothingToBuild`) explains every reason met.
DROP_REASONS: dict[str, str] = {
    "no_assessment": "items without an assessment; score the runs in mode `assessment` or `both`",
    "no_response_transcript": "items without a response transcript; give `response_transcript` in "
    'each item\'s manifest meta, or in --texts FILE (JSON lines {"id": ITEM_ID, "response_transcript": ...})',
    "no_query_speech_tokens": "items without query speech tokens, which GLM-4-Voice rows carry as the "
    "user turn; give `query_speech_tokens` (GLM-4-Voice tokenizer ids) in meta or in --texts FILE",
    "empty_reflection": "assessments that are only a SCORES line",
    "duplicate": "audio pairs met before (in another run, or twice in one)",
    "chunk_counts_differ": "response and reflection chunk counts differ and --policy is drop; "
    "use --policy append or stretch",
    "no_score_line": "assessments without a valid final `SCORES: NS=.. WA=.. EU=.. ES=..` line, which "
    "judge SFT rows must keep; only a judge that writes the line (no heads file) gives them",
    "unscored_items": "items without scores yet; finish the runs first (`evalsvc bulk resume RUN`)",
    "single_candidate": "queries with a single response; pairs need two or more responses to the same "
    "query audio (give runs of several systems, --run A --run B, or several samples)",
    "duplicate_candidates": "the same response audio twice for one query",
    "mixed_judges": "queries whose responses different judge versions scored; give runs of one judge",
    "below_margin": "queries whose best and worst avg differ by less than --margin; lower --margin",
    "not_dominant": "queries whose best response is worse than the worst on some dimension; drop --dominance",
    "trl_no_query_text": "pairs without the query as text for TRL's prompt; give `query_transcript` or "
    "`query_speech_tokens` in meta or --texts, or build --format llamafactory only",
}


@dataclass(frozen=True)
class InterleaveOptions:
    variant: Variant = "reempathy"
    response_chunk: int = 15
    reflection_chunk: int = 15
    policy: Policy = "append"
    start_marker: str = "<reflection>"
    end_marker: str = "</reflection>"
    query_format: QueryFormat = "audio"


@dataclass
class BuildReport:
    """What a build wrote and what it left out, with why; `outcomes` counts what the chunk-count
    policy did (ReEmpathy only: the baselines do not chunk). `details` adds a figure to a reason's
    explanation (the largest margin below `--margin`)."""

    written: dict[str, int] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    details: dict[str, str] = field(default_factory=dict)
    settings_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"written": self.written, "dropped": dict(sorted(self.dropped.items()))}
        if self.outcomes:
            payload["interleaving"] = dict(sorted(self.outcomes.items()))
        if self.settings_file:
            payload["llamafactory_settings"] = self.settings_file
        return payload

    def require_rows(self, file_name: str, rows: int, *, only: Sequence[str] | None = None) -> None:
        """Raise `NothingToBuild` when `file_name` got no row, saying per reason why items were left
        out and what to supply; `only` limits the reasons to those that concern this file. Called
        inside the writer's block, so that nothing is written or registered then."""
        if rows:
            return
        dropped = {reason: count for reason, count in self.dropped.items() if only is None or reason in only}
        if not dropped:
            raise NothingToBuild(f"no rows for {file_name}: the runs have no items; nothing was written")
        reasons = "; ".join(
            f"{reason} ({count}): {DROP_REASONS.get(reason, reason)}"
            + (f" ({self.details[reason]})" if reason in self.details else "")
            for reason, count in sorted(dropped.items(), key=lambda entry: -entry[1])
        )
        raise NothingToBuild(
            f"no rows for {file_name}, nothing was written or registered. Left out: {reasons}"
        )


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
    audio_paths: AudioPaths | None = None,
) -> BuildReport:
    """ReEmpathy / CoTBS / plain SFT data of the runs as LLaMA-Factory sharegpt: the user turn is the
    query audio (`query_format="audio"`) or its GLM-4-Voice speech tokens (`"glm4-voice"`). Also
    writes NAME.llamafactory.yaml, the training settings the rows need (`write_training_entry`)."""
    report, seen = BuildReport(), Deduper()
    texts.check_ids(item_keys(session, run_ids))
    paths = audio_paths or AudioPaths.of(out_dir)
    glm = options.query_format == "glm4-voice"
    with llamafactory_file(out_dir, check_name(name), ranking=False, audios=not glm) as writer:
        for batch in batches(stream_items(session, run_ids), BATCH):
            admitted: list[tuple[ItemRow, ItemTexts, str]] = []
            for item in batch:
                found = _admit(item, texts, report, seen, options.query_format)
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
                answer = render(codec, layout, options)
                if glm:
                    assert item_texts.query_speech_tokens is not None  # admitted only with them
                    row = sharegpt_sft(
                        speech_query(item_texts.query_speech_tokens, f"item {item.item_key!r}"),
                        answer,
                        [],
                        system=GLM4_VOICE_SYSTEM,
                    )
                else:
                    row = sharegpt_sft(AUDIO_PLACEHOLDER, answer, [paths(item.query_ref)])
                writer.write(row)
        report.written[f"{name}.jsonl"] = writer.rows
        report.require_rows(f"{name}.jsonl", writer.rows)
        markers = (options.start_marker, options.end_marker) if options.variant != "plain" else ()
        entry = write_training_entry(
            out_dir, name, query_format=options.query_format, markers=markers, audio_paths=paths
        )
    report.settings_file = entry.name
    return report


def _admit(
    item: ItemRow, texts: TextSource, report: BuildReport, seen: Deduper, query_format: QueryFormat
) -> tuple[ItemTexts, str] | None:
    """(texts, reflection) of a usable item; otherwise None, with the reason counted."""
    if not item.assessment:
        report.dropped["no_assessment"] += 1
        return None
    item_texts = texts.texts(item.item_key, item.meta, (item.query_sha256, item.response_sha256))
    reflection = reflection_text(item.assessment)
    if not item_texts.response_transcript:
        reason = "no_response_transcript"
    elif query_format == "glm4-voice" and not item_texts.query_speech_tokens:
        reason = "no_query_speech_tokens"
    elif not reflection:
        reason = "empty_reflection"
    elif not seen.first(item.query_sha256, item.response_sha256):
        reason = "duplicate"
    else:
        return item_texts, reflection
    report.dropped[reason] += 1
    return None


def build_judge_sft(
    session: Session,
    run_ids: Sequence[int],
    *,
    out_dir: Path,
    name: str,
    audio_paths: AudioPaths | None = None,
) -> BuildReport:
    """(query audio, response audio) -> assessment rows in the judge's prompt, for LLaMA-Factory.

    An assessment without a valid final score line is left out: trained on, it would teach the judge
    to forget the line its score parser needs.
    """
    report, seen = BuildReport(), Deduper()
    paths = audio_paths or AudioPaths.of(out_dir)
    with llamafactory_file(out_dir, check_name(name), ranking=False) as writer:
        for item in stream_items(session, run_ids):
            if not item.assessment:
                report.dropped["no_assessment"] += 1
            elif not isinstance(parse_score_line(item.assessment), Scores):
                report.dropped["no_score_line"] += 1
            elif not seen.first(item.query_sha256, item.response_sha256):
                report.dropped["duplicate"] += 1
            else:
                audios = [paths(item.query_ref), paths(item.response_ref)]
                writer.write(
                    sharegpt_sft(JUDGE_USER_TEXT, item.assessment.strip(), audios, system=SYSTEM_TEXT)
                )
        report.written[f"{name}.jsonl"] = writer.rows
        report.require_rows(f"{name}.jsonl", writer.rows)
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
