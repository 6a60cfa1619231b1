"""DPO preference pairs from judge scores: per query, the best-scored response over the worst.

Candidates are the scored responses to one query, across every run given (several systems, or several
samples of one system): items are grouped by the sha256 of their decoded query audio, so the same
recording matches whatever its path. For each query with two or more distinct responses:

    chosen   = the highest `avg`, rejected = the lowest (ties broken by item key, for reproducibility)
    kept     only when avg(chosen) - avg(rejected) >= margin (default 0.5; compared with a 1e-9
             tolerance so that decimal scores exactly at the margin count), and, with `dominance`,
             only when chosen is no worse than rejected on any of NS, WA, EU, ES

Scores of different judges are not comparable, so a query whose candidates were scored by different
model versions is left out (`mixed_judges`). The same response audio met twice for one query (the
same item in two runs, or one recording under two keys) is one candidate (`duplicate_candidates`).

Responses are written as the dialogue model says them: the transcript, or with speech tokens the
13:26 text/speech stream (which needs the tokenizer). TRL rows need the query as text (transcript, or
speech tokens in GLM-4-Voice's markup); LLaMA-Factory rows carry the query audio itself, or with
`query_format="glm4-voice"` its speech tokens in GLM-4-Voice's markup.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.store.item_streams import ItemRow, item_keys, stream_items
from evalsvc.training.codec import TokenCodec
from evalsvc.training.datasets import BuildReport, check_name, response_stream
from evalsvc.training.formats import (
    AUDIO_PLACEHOLDER,
    AudioPaths,
    JsonlWriter,
    QueryFormat,
    llamafactory_file,
    sharegpt_ranking,
    trl_file,
    trl_preference,
)
from evalsvc.training.glm4voice import GLM4_VOICE_SYSTEM, speech_query
from evalsvc.training.texts import ItemTexts, TextSource

OutputFormat = Literal["llamafactory", "trl"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
_TOLERANCE = 1e-9
# Reasons that leave a query without any pair (the TRL file also loses pairs without query text).
_PAIR_REASONS = (
    "unscored_items", "duplicate_candidates", "single_candidate", "mixed_judges",
    "below_margin", "not_dominant", "no_response_transcript",
)  # fmt: skip


@dataclass(frozen=True)
class PairRule:
    margin: float = 0.5
    dominance: bool = False


@dataclass(frozen=True)
class Choice:
    chosen: ItemRow
    rejected: ItemRow

    @property
    def margin(self) -> float:
        assert self.chosen.avg is not None and self.rejected.avg is not None
        return self.chosen.avg - self.rejected.avg


def choose(candidates: Sequence[ItemRow], rule: PairRule) -> Choice | str:
    """The pair for one query's distinct scored candidates, or why there is none (a drop reason)."""
    if len(candidates) < 2:
        return "single_candidate"
    if len({item.model_version_id for item in candidates}) > 1:
        return "mixed_judges"
    ranked = sorted(candidates, key=lambda item: (-(item.avg or 0.0), item.item_key))
    choice = Choice(ranked[0], ranked[-1])
    if choice.margin < rule.margin - _TOLERANCE:
        return "below_margin"
    assert choice.chosen.scores is not None and choice.rejected.scores is not None
    if rule.dominance and any(
        c < r for c, r in zip(choice.chosen.scores, choice.rejected.scores, strict=True)
    ):
        return "not_dominant"
    return choice


class _Renderer:
    """Responses and queries as text; the tokenizer is needed only for speech tokens."""

    def __init__(self, codec: TokenCodec | None, texts: TextSource) -> None:
        self._codec = codec
        self._texts = texts

    def texts(self, item: ItemRow) -> ItemTexts:
        return self._texts.texts(item.item_key, item.meta, (item.query_sha256, item.response_sha256))

    def response(self, texts: ItemTexts) -> str | None:
        if not texts.response_transcript:
            return None
        if not texts.response_speech_tokens:
            return texts.response_transcript
        codec = self._require_codec()
        [ids] = codec.encode([texts.response_transcript])
        return "".join(codec.render_chunks([response_stream(codec, ids, texts)]))

    def query(self, texts: ItemTexts, where: str) -> str | None:
        """The query as text: GLM-4-Voice's markup of its speech tokens, else its transcript."""
        if texts.query_speech_tokens:
            return speech_query(texts.query_speech_tokens, where)
        return texts.query_transcript or None

    def _require_codec(self) -> TokenCodec:
        if self._codec is None:
            raise InvalidParameter(
                "responses with speech tokens need --tokenizer (to interleave text and speech)"
            )
        return self._codec


def build_pairs(
    session: Session,
    run_ids: Sequence[int],
    *,
    rule: PairRule,
    texts: TextSource,
    codec: TokenCodec | None,
    formats: Sequence[OutputFormat],
    out_dir: Path,
    name: str,
    audio_paths: AudioPaths | None = None,
    query_format: QueryFormat = "audio",
) -> BuildReport:
    """DPO pairs of the runs as LLaMA-Factory ranking data (`NAME.jsonl`, registered in
    dataset_info.json) and/or TRL preference rows (`NAME.trl.jsonl`). Each requested file must get
    rows: otherwise `NothingToBuild`, and no file is written."""
    if not formats:
        raise InvalidParameter(f"give at least one output format ({', '.join(OUTPUT_FORMATS)})")
    if not 0.0 <= rule.margin <= 4.0:
        raise InvalidParameter(f"the margin is a difference of 1-5 scores: 0 to 4, not {rule.margin}")
    name = check_name(name)
    texts.check_ids(item_keys(session, run_ids))
    report, renderer = BuildReport(), _Renderer(codec, texts)
    paths = audio_paths or AudioPaths.of(out_dir)
    below_margin = 0.0
    with contextlib.ExitStack() as stack:
        writers: dict[OutputFormat, JsonlWriter] = {}
        if "llamafactory" in formats:
            writers["llamafactory"] = stack.enter_context(
                llamafactory_file(out_dir, name, ranking=True, audios=query_format == "audio")
            )
        if "trl" in formats:
            writers["trl"] = stack.enter_context(trl_file(out_dir / f"{name}.trl.jsonl"))
        items = stream_items(session, run_ids, by_query=True)
        for query_sha256, group in itertools.groupby(items, key=lambda item: item.query_sha256):
            if query_sha256 is None:  # the unscored items, all at the end
                report.dropped["unscored_items"] += sum(1 for _ in group)
                continue
            candidates: dict[str | None, ItemRow] = {}
            for item in group:
                if not item.scored:
                    report.dropped["unscored_items"] += 1
                elif item.response_sha256 in candidates:
                    report.dropped["duplicate_candidates"] += 1
                else:
                    candidates[item.response_sha256] = item
            choice = choose(list(candidates.values()), rule)
            if isinstance(choice, str):
                report.dropped[choice] += 1
                if choice == "below_margin":
                    below_margin = max(below_margin, _spread(candidates.values()))
            else:
                _write_pair(choice, renderer, writers, report, paths, query_format)
        if below_margin:
            report.details["below_margin"] = f"the largest difference found is {below_margin:.3g}"
        for output, writer in writers.items():
            file_name = f"{name}.trl.jsonl" if output == "trl" else f"{name}.jsonl"
            report.written[file_name] = writer.rows
            only = "trl_no_query_text" if output == "trl" else "no_query_speech_tokens"
            reasons = (*_PAIR_REASONS, only)
            report.require_rows(file_name, writer.rows, only=reasons)
    return report


def _spread(candidates: Iterable[ItemRow]) -> float:
    """The avg difference between a query's best and worst candidate."""
    scores = [item.avg for item in candidates if item.avg is not None]
    return max(scores) - min(scores) if scores else 0.0


def _write_pair(
    choice: Choice,
    renderer: _Renderer,
    writers: dict[OutputFormat, JsonlWriter],
    report: BuildReport,
    paths: AudioPaths,
    query_format: QueryFormat,
) -> None:
    chosen_texts, rejected_texts = renderer.texts(choice.chosen), renderer.texts(choice.rejected)
    chosen, rejected = renderer.response(chosen_texts), renderer.response(rejected_texts)
    if chosen is None or rejected is None:
        report.dropped["no_response_transcript"] += 1
        return
    where = f"item {choice.chosen.item_key!r}"
    query = renderer.query(chosen_texts, where) or renderer.query(rejected_texts, where)
    if "llamafactory" in writers and query_format == "audio":
        writers["llamafactory"].write(
            sharegpt_ranking(AUDIO_PLACEHOLDER, chosen, rejected, [paths(choice.chosen.query_ref)])
        )
    elif "llamafactory" in writers:
        tokens = chosen_texts.query_speech_tokens or rejected_texts.query_speech_tokens
        if not tokens:
            report.dropped["no_query_speech_tokens"] += 1
        else:
            writers["llamafactory"].write(
                sharegpt_ranking(speech_query(tokens, where), chosen, rejected, [], system=GLM4_VOICE_SYSTEM)
            )
    if "trl" in writers:
        if query is None:
            report.dropped["trl_no_query_text"] += 1
        else:
            writers["trl"].write(trl_preference(query, chosen, rejected))
