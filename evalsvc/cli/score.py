"""`evalsvc score QUERY RESPONSE`: judge one spoken pair and print the result as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from time import perf_counter
from typing import Any

from evalsvc.audio import AudioLimits, DecodedAudio, decode_audio
from evalsvc.cli.common import EXIT_OK, add_model_options, print_json
from evalsvc.engine.engine import Engine
from evalsvc.engine.types import MODES, AudioPair, PairResult
from evalsvc.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score",
        help="score one spoken query/response pair",
        description="Judge a spoken system response to a spoken user query: NS, WA, EU, ES scores "
        "and/or a descriptive assessment, printed as JSON.",
    )
    parser.add_argument(
        "query", type=Path, metavar="QUERY", help="the user's spoken query (wav/flac/ogg/mp3)"
    )
    parser.add_argument("response", type=Path, metavar="RESPONSE", help="the system's spoken response")
    parser.add_argument("--mode", choices=MODES, default="scores", help="what to produce (default: scores)")
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    limits = AudioLimits.from_settings(settings)
    started = perf_counter()
    query = decode_audio(args.query, limits)
    response = decode_audio(args.response, limits)
    decode_ms = (perf_counter() - started) * 1e3
    engine = Engine.load(settings)
    [result] = engine.score([AudioPair(query, response)], args.mode)
    print_json(result_payload(result, engine, query, response, decode_ms))
    return EXIT_OK


def result_payload(
    result: PairResult, engine: Engine, query: DecodedAudio, response: DecodedAudio, decode_ms: float
) -> dict[str, Any]:
    """The documented JSON shape of one scored pair."""
    payload: dict[str, Any] = {
        "scores": result.scores.to_dict() if result.scores else None,
        "assessment": result.assessment,
        "model": engine.fingerprint.to_dict(),
        "audio": {
            "query": {"sha256": query.sha256, "duration_s": round(query.duration_s, 4)},
            "response": {"sha256": response.sha256, "duration_s": round(response.duration_s, 4)},
        },
        "timings_ms": {"decode_ms": round(decode_ms, 2)}
        | {name: round(value, 2) for name, value in result.timings_ms.items()},
    }
    if result.error is not None:
        payload["error"] = result.error.to_dict()
    return payload
