"""`evalsvc score QUERY RESPONSE`: judge one spoken pair and print the result as JSON.

The result is stored (default: the SQLite file in the data directory) and the same pair, model
fingerprint and mode is then answered from the store, `"cached": true`, without loading the model.
`--no-store` scores without reading or writing the store. A stored result is the tenant's `--tenant`
(default `local`, as for `serve --no-auth`): a local server on the same database serves it.

`--judge llm-mos|llm-ab|llm-assessment[+emotion]` asks the LLM judge instead (evalsvc.judge_scoring):
transcripts, labels and verdicts are stored and reused the same way; A/B needs `--reference` (audio)
or `--reference-transcript`. With `--server URL` the server judges (its LLM settings), through
`EvalClient.judge`.
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
from evalsvc.errors import InvalidParameter
from evalsvc.judge_scoring import JudgedPair, JudgeService, judge_payload
from evalsvc.judges.judges import JUDGE_IDS
from evalsvc.scoring import LazyEngine, ResultCache, result_payload, score_pairs
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.models import EMPATHYEVAL_JUDGE


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
    parser.add_argument(
        "--judge",
        choices=(EMPATHYEVAL_JUDGE, *JUDGE_IDS),
        default=EMPATHYEVAL_JUDGE,
        help="who judges: empathyeval (the model, default) or an LLM judge over transcripts "
        "(EVALSVC_LLM_* settings)",
    )
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument("--reference", type=Path, help="the ground-truth spoken response (llm-ab judges)")
    reference.add_argument("--reference-transcript", help="the ground-truth response as text (llm-ab)")
    add_tenant_option(parser, "a stored result")
    add_model_options(parser)
    add_store_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.judge == EMPATHYEVAL_JUDGE and (args.reference or args.reference_transcript is not None):
        raise InvalidParameter("--reference and --reference-transcript are for the llm-ab judges")
    if args.server:
        return score_remotely(args, settings)
    limits = AudioLimits.from_settings(settings)
    started = perf_counter()
    query = decode_audio(args.query, limits)
    response = decode_audio(args.response, limits)
    reference = decode_audio(args.reference, limits) if args.reference else args.reference_transcript
    decode_ms = (perf_counter() - started) * 1e3
    if args.judge != EMPATHYEVAL_JUDGE:
        return _judge_with_llm(args, settings, JudgedPair(query, response, reference), decode_ms)
    engine = LazyEngine(settings)
    store = None if args.no_store else Store.from_settings(settings)
    cache = None if store is None else ResultCache(store)
    tenant_id = None if store is None else tenant_id_for(store, args.tenant)
    started = perf_counter()
    [scored] = score_pairs(engine, [AudioPair(query, response)], args.mode, cache=cache, tenant_id=tenant_id)
    timings = {"decode_ms": decode_ms, "scoring_ms": (perf_counter() - started) * 1e3}
    print_json(result_payload(scored, engine.fingerprint, query, response, timings))
    return EXIT_OK


def _judge_with_llm(args: argparse.Namespace, settings: Settings, pair: JudgedPair, decode_ms: float) -> int:
    store = None if args.no_store else Store.from_settings(settings)
    tenant_id = None if store is None else tenant_id_for(store, args.tenant)
    service = JudgeService(settings, store)
    try:
        started = perf_counter()
        [answer] = service.judge(args.judge, [pair], tenant_id=tenant_id)
        judging_ms = (perf_counter() - started) * 1e3
        fingerprint = service.fingerprint(service.spec(args.judge))
    finally:
        service.client.close()
    timings = {"decode_ms": decode_ms, "judging_ms": judging_ms}
    print_json(judge_payload(answer, args.judge, fingerprint.to_dict(), pair, timings))
    return EXIT_OK
