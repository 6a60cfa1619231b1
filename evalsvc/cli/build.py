"""`evalsvc build interleaved|pairs|sft`: training data from scored runs, for LLaMA-Factory and TRL.

    evalsvc build interleaved --run 3 --tokenizer TOK --out data/   ReEmpathy (or --variant cotbs|plain)
    evalsvc build pairs --run 3 --run 4 --out data/                 DPO pairs: best avg over worst
    evalsvc build sft --run 3 --out data/                           judge SFT: audio pair -> assessment

Each writes OUT/NAME.jsonl and registers NAME in OUT/dataset_info.json (pairs also write
OUT/NAME.trl.jsonl, interleaved OUT/NAME.llamafactory.yaml), then prints JSON: the files with their
row counts, what was dropped and why, and for `interleaved` what the chunk-count policy did.
Transcripts and speech tokens come from each item's meta or from `--texts FILE`, transcripts also from
those the LLM judges stored for the clips (see evalsvc.training.texts). A build that would write no
row fails with exit code 2 and a reason per cause; a `--texts` file with problems (bad lines, unknown keys, ids matching no item) fails with every
problem listed by line, as a manifest does. Either way nothing is written, registered or created.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR, add_store_options, fail, print_json
from evalsvc.cli.train import positive_int
from evalsvc.errors import TextsInvalid
from evalsvc.outdirs import output_directory
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.judging import latest_transcript
from evalsvc.training.codec import TokenCodec
from evalsvc.training.datasets import (
    VARIANTS,
    BuildReport,
    InterleaveOptions,
    build_interleaved,
    build_judge_sft,
)
from evalsvc.training.formats import QUERY_FORMATS, AudioPaths
from evalsvc.training.interleave import POLICIES
from evalsvc.training.pairs import OUTPUT_FORMATS, PairRule, build_pairs
from evalsvc.training.texts import TextSource

_TARGET_HELP = (
    "how rows carry the query: audio = <audio> and the file (audio-input models: Qwen-Omni, ...); "
    "glm4-voice = its GLM-4-Voice speech tokens (query_speech_tokens), for LLaMA-Factory's glm4 "
    "template (default: %(default)s)"
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "build",
        help="build training data (ReEmpathy, CoTBS, DPO pairs, judge SFT) from scored runs",
        description="Training data for LLaMA-Factory and TRL from the runs' scores and assessments.",
    )
    kinds = parser.add_subparsers(dest="build_kind", required=True, metavar="KIND")

    interleaved = kinds.add_parser(
        "interleaved",
        help="ReEmpathy sequences: response chunks interleaved with reflection chunks",
        description="The query audio, then response chunks (transcript, or text + speech tokens 13:26) "
        "alternating with marked chunks of the judge's assessment; or a baseline variant.",
    )
    _common(interleaved, default_name="reempathy")
    interleaved.add_argument("--tokenizer", type=Path, required=True, help="fast tokenizer dir or file")
    interleaved.add_argument(
        "--variant",
        choices=VARIANTS,
        default="reempathy",
        help="cotbs: reflection first; plain: no reflection (default: %(default)s)",
    )
    interleaved.add_argument("--target", choices=QUERY_FORMATS, default="audio", help=_TARGET_HELP)
    interleaved.add_argument(
        "--response-chunk",
        type=positive_int,
        default=15,
        metavar="TOKENS",
        help="tokens per response chunk (default: %(default)s; the paper finds 15-21 best)",
    )
    interleaved.add_argument(
        "--reflection-chunk",
        type=positive_int,
        default=15,
        metavar="TOKENS",
        help="tokens per reflection chunk (default: %(default)s)",
    )
    interleaved.add_argument(
        "--policy",
        choices=POLICIES,
        default="append",
        help="when the streams' chunk counts differ (default: %(default)s)",
    )
    interleaved.add_argument(
        "--start-marker", default="<reflection>", help="opens a reflection chunk (default: %(default)s)"
    )
    interleaved.add_argument(
        "--end-marker", default="</reflection>", help="closes a reflection chunk (default: %(default)s)"
    )
    interleaved.set_defaults(handler=run_interleaved)

    pairs = kinds.add_parser(
        "pairs",
        help="DPO pairs: per query, the best-scored response over the worst",
        description="Preference pairs from the runs' scores: chosen = best avg, rejected = worst, "
        "kept when the margin is at least --margin.",
    )
    _common(pairs, default_name="dpo_pairs")
    pairs.add_argument("--margin", type=float, default=0.5, help="least avg difference (default 0.5)")
    pairs.add_argument(
        "--dominance", action="store_true", help="chosen must be no worse on any of NS, WA, EU, ES"
    )
    pairs.add_argument(
        "--format", dest="formats", action="append", choices=OUTPUT_FORMATS, help="default: both"
    )
    pairs.add_argument(
        "--tokenizer", type=Path, help="fast tokenizer; needed when responses have speech tokens"
    )
    pairs.add_argument("--target", choices=QUERY_FORMATS, default="audio", help=_TARGET_HELP)
    pairs.set_defaults(handler=run_pairs)

    sft = kinds.add_parser(
        "sft",
        help="judge SFT data: (query audio, response audio) -> assessment",
        description="Rows in the judge's own prompt whose answer is the run's assessment, to fine-tune "
        "the judge further. Assessments without a valid SCORES line are left out.",
    )
    _common(sft, default_name="judge_sft", texts=False)
    sft.set_defaults(handler=run_sft)


def _common(parser: argparse.ArgumentParser, *, default_name: str, texts: bool = True) -> None:
    parser.add_argument(
        "--run", dest="runs", type=int, action="append", required=True, metavar="ID", help="repeatable"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="LLaMA-Factory dataset_dir")
    parser.add_argument("--name", default=default_name, help=f"dataset name (default {default_name})")
    parser.add_argument(
        "--audio-root",
        type=Path,
        metavar="DIR",
        help="write audio paths relative to DIR, LLaMA-Factory's media_dir (default: relative to --out)",
    )
    if texts:
        parser.add_argument(
            "--texts", type=Path, metavar="FILE", help="JSONL of transcripts/speech tokens by id"
        )
    add_store_options(parser, data_dir=True)


def run_interleaved(args: argparse.Namespace, settings: Settings) -> int:
    options = InterleaveOptions(
        variant=args.variant,
        response_chunk=args.response_chunk,
        reflection_chunk=args.reflection_chunk,
        policy=args.policy,
        start_marker=args.start_marker,
        end_marker=args.end_marker,
        query_format=args.target,
    )
    codec = TokenCodec.from_path(args.tokenizer)

    def build(session: Session, texts: TextSource, out: Path) -> BuildReport:
        return build_interleaved(
            session,
            args.runs,
            codec=codec,
            texts=texts,
            options=options,
            out_dir=out,
            name=args.name,
            audio_paths=AudioPaths.of(out, args.audio_root),
        )

    return _build(args, settings, build, {"variant": args.variant, "target": args.target})


def run_pairs(args: argparse.Namespace, settings: Settings) -> int:
    codec = TokenCodec.from_path(args.tokenizer) if args.tokenizer else None
    formats = tuple(dict.fromkeys(args.formats or OUTPUT_FORMATS))
    rule = PairRule(margin=args.margin, dominance=args.dominance)

    def build(session: Session, texts: TextSource, out: Path) -> BuildReport:
        return build_pairs(
            session,
            args.runs,
            rule=rule,
            texts=texts,
            codec=codec,
            formats=formats,
            out_dir=out,
            name=args.name,
            audio_paths=AudioPaths.of(out, args.audio_root),
            query_format=args.target,
        )

    return _build(args, settings, build, {"margin": args.margin, "dominance": args.dominance})


def run_sft(args: argparse.Namespace, settings: Settings) -> int:
    def build(session: Session, _texts: TextSource, out: Path) -> BuildReport:
        audio_paths = AudioPaths.of(out, args.audio_root)
        return build_judge_sft(session, args.runs, out_dir=out, name=args.name, audio_paths=audio_paths)

    return _build(args, settings, build, {})


def _build(
    args: argparse.Namespace,
    settings: Settings,
    build: Callable[[Session, TextSource, Path], BuildReport],
    header: dict[str, object],
) -> int:
    """Run one builder in the output directory (removed again if it fails and was new), printing
    every problem of a --texts file with its line, as `bulk` does for a manifest."""
    texts_path: Path | None = getattr(args, "texts", None)
    try:
        with (
            Store.from_settings(settings).session() as session,
            TextSource(texts_path, stored=lambda sha256: latest_transcript(session, sha256)) as texts,
            output_directory(args.out) as out,
        ):
            report = build(session, texts, out)
    except TextsInvalid as error:
        for line, message in error.problems:
            print(f"{texts_path}:{line}: {message}", file=sys.stderr)
        return fail(error.code, error.message, EXIT_USER_ERROR)
    print_json({"out": str(args.out), **header, **report.to_dict()})
    return EXIT_OK
