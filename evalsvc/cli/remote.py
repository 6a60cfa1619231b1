"""`evalsvc score --server URL`: the same JSON as local scoring, from a running `evalsvc serve`
(`--judge` an LLM judge: the server's `JudgeResponse`, with `--reference` / `--reference-transcript`).

Nothing is decoded or loaded here: the files go to the server as they are, through `EvalClient`
(timeouts, retries on 429/503). Its errors map to the CLI's exit codes: 2 for what the request must
fix (4xx, an unreadable local file), 3 for the server or the connection.
"""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_USER_ERROR, fail, print_json
from evalsvc.client import APIError, EvalClient, TransportError
from evalsvc.settings import Settings
from evalsvc.store.models import EMPATHYEVAL_JUDGE


def score_remotely(args: argparse.Namespace, settings: Settings) -> int:
    try:
        with EvalClient(args.server, args.api_key or settings.api_key) as client:
            if args.judge == EMPATHYEVAL_JUDGE:
                result: BaseModel = client.score(args.query, args.response, mode=args.mode)
            else:
                result = client.judge(
                    args.query,
                    args.response,
                    args.judge,
                    reference=args.reference,
                    reference_transcript=args.reference_transcript,
                )
    except APIError as error:
        users_fault = error.status_code < 500 and error.status_code != 429
        return fail(error.code, error.message, EXIT_USER_ERROR if users_fault else EXIT_CONFIG_ERROR)
    except TransportError as error:
        return fail("server_unreachable", str(error), EXIT_CONFIG_ERROR)
    except OSError as error:
        return fail("audio_unreadable", f"cannot read {error.filename}: {error.strerror}", EXIT_USER_ERROR)
    print_json(result.model_dump(mode="json", exclude_unset=True))
    return EXIT_OK
