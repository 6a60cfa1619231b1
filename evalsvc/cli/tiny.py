"""`evalsvc tiny-model DIR`: build the random tiny judge used by the demo, tests and benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalsvc.cli.common import EXIT_OK, print_json
from evalsvc.engine.fingerprint import build_fingerprint
from evalsvc.engine.types import Decoding
from evalsvc.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tiny-model",
        help="build a tiny random Qwen3-Omni judge (checkpoint, tokenizer, adapter, heads)",
        description="Build a tiny random Qwen3-Omni checkpoint with tokenizer, feature extractor config, "
        "LoRA adapter and heads in DIR. The same seed gives the same fingerprint.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--seed", dest="build_seed", type=int, default=0)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from evalsvc.engine.tiny import build_tiny_model  # torch and transformers: only for this command

    paths = build_tiny_model(args.directory, seed=args.build_seed)
    fingerprint = build_fingerprint(str(paths.model), None, paths.adapter, paths.heads, Decoding())
    print_json(
        {
            "directory": str(paths.root),
            "model": str(paths.model),
            "adapter": str(paths.adapter),
            "heads": str(paths.heads),
            "backbone": fingerprint.backbone,
        }
    )
    return EXIT_OK
