"""`evalsvc score QUERY RESPONSE`: judge one spoken pair and print the result as JSON.

The result is stored (default: the SQLite file in the data directory) and the same pair, model
fingerprint and mode is then answered from the store, `"cached": true`, without loading the model.
`--no-store` scores without reading or writing the store. A stored result is the tenant's `--tenant`
(default `local`, as for `serve --no-auth`): a local server on the same database serves it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from time import perf_counter

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.cli.common import (
    EXIT_OK,
    add_model_options,
    add_store_options,
    add_tenant_option,
    print_json,
    tenant_id_for,
)
from evalsvc.cli.remote import score_remotely
from evalsvc.engine.types import MODES, AudioPair
from evalsvc.scoring import LazyEngine, ResultCache, result_payload, score_pairs
from evalsvc.settings import Settings
from evalsvc.store import Store


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score",
        help="score one spoken query/response pair",
        description="Judge a spoken system response to a spoken user query: NS, WA, EU, ES scores "
        "and/or a descriptive assessment, printed as JSON. Results are stored and reused.",
    )
    parser.add_argument(
        "query", type=Path, metavar="QUERY", help="the user's spoken query (wav/flac/ogg/mp3)"
    )
    parser.add_argument("response", type=Path, metavar="RESPONSE", help="the system's spoken response")
    parser.add_argument("--mode", choices=MODES, default="scores", help="what to produce (default: scores)")
    parser.add_argument(
        "--no-store", action="store_true", help="neither look the pair up in the store nor store the result"
    )
    parser.add_argument("--server", metavar="URL", help="score on a running `evalsvc serve` instead")
    parser.add_argument("--api-key", help="the key for --server (default: EVALSVC_API_KEY)")
    add_tenant_option(parser, "a stored result")
    add_model_options(parser)
    add_store_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.server:
        return score_remotely(args, settings)
    limits = AudioLimits.from_settings(settings)
    started = perf_counter()
    query = decode_audio(args.query, limits)
    response = decode_audio(args.response, limits)
    decode_ms = (perf_counter() - started) * 1e3
    engine = LazyEngine(settings)
    store = None if args.no_store else Store.from_settings(settings)
    cache = None if store is None else ResultCache(store)
    tenant_id = None if store is None else tenant_id_for(store, args.tenant)
    started = perf_counter()
    [scored] = score_pairs(engine, [AudioPair(query, response)], args.mode, cache=cache, tenant_id=tenant_id)
    timings = {"decode_ms": decode_ms, "scoring_ms": (perf_counter() - started) * 1e3}
    print_json(result_payload(scored, engine.fingerprint, query, response, timings))
    return EXIT_OK
