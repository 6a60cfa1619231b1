"""`evalsvc export merged`: write the base checkpoint with the EmpathyEval adapter merged in, for a
generation server (vLLM) that cannot apply a LoRA to Qwen3-Omni."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from pathlib import Path

from evalsvc.cli.common import EXIT_OK, add_model_options, print_json
from evalsvc.errors import InvalidParameter
from evalsvc.settings import Settings

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(GB|MB|GiB|MiB)$")
_UNITS = {"GB": 10**9, "MB": 10**6, "GiB": 2**30, "MiB": 2**20}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="export a merged checkpoint for a generation server")
    kinds = parser.add_subparsers(dest="export_kind", required=True, metavar="KIND")
    merged = kinds.add_parser(
        "merged",
        help="the base model with the LoRA adapter merged into its weights",
        description="Merge --adapter into the base model (--model / EVALSVC_MODEL) and write the result "
        "(--adapter / EVALSVC_ADAPTER) to --out in the hub layout that vLLM and transformers load (config, tokenizer, processor and "
        "chat-template files, sharded safetensors with an index), with a manifest of the base, adapter "
        "and prompt. evalsvc loads it as the judge it was merged from (same fingerprint, heads fit).",
    )
    merged.add_argument("--out", type=Path, required=True, help="new (or empty) directory to write")
    merged.add_argument(
        "--max-shard-size", default="5GB", help="largest safetensors shard, e.g. 5GB or 2GiB (default: 5GB)"
    )
    add_model_options(merged)
    merged.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from evalsvc.engine.merge_export import export_merged  # torch and transformers: only here

    manifest = export_merged(settings, args.out, max_shard_bytes=shard_bytes(args.max_shard_size))
    print_json({"directory": str(args.out), "manifest": asdict(manifest), "manifest_sha256": manifest.sha256})
    return EXIT_OK


def shard_bytes(text: str) -> int:
    match = _SIZE.match(text.strip())
    if match is None:
        raise InvalidParameter(f"--max-shard-size {text!r} is not a size like 5GB, 500MB or 2GiB")
    return max(1, int(float(match[1]) * _UNITS[match[2]]))
