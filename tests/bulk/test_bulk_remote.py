"""`RemoteItemScorer`: how the HTTP model tier's answers become item outcomes (httpx MockTransport).

The model tier itself is tested end to end in tests/test_api_server.py; here the other side is an
external HTTP service, so its answers are scripted.
"""

from __future__ import annotations

import httpx
import pytest

from evalsvc.bulk.records import PendingItem
from evalsvc.bulk.scorers import RemoteItemScorer
from evalsvc.client import EvalClient, RetryPolicy
from evalsvc.errors import ConfigurationError, ServiceBusy
from evalsvc.store import ItemOutcome
from tests.helpers import EXAMPLES

QUERY, RESPONSE = str(EXAMPLES / "query.wav"), str(EXAMPLES / "response.wav")
MODEL = {
    "fingerprint": "f" * 64, "backbone": "b" * 64, "model_id": "tiny", "model_revision": None,
    "weights_sha256": None, "adapter_sha256": None, "heads_sha256": None, "prompt_version": "v1",
    "decoding": {}, "packages": {},
}  # fmt: skip
AUDIO = {
    "query": {"sha256": "q" * 64, "duration_s": 1.0},
    "response": {"sha256": "r" * 64, "duration_s": 1.0},
}


def answer(result_id: int | None, error: dict[str, str] | None = None) -> dict[str, object]:
    scores = None if error else {"NS": 3.0, "WA": 3.0, "EU": 3.0, "ES": 3.0, "avg": 3.0}
    body = {"id": result_id, "cached": False, "scores": scores, "assessment": None, "model": MODEL,
            "audio": AUDIO, "timings_ms": {}}  # fmt: skip
    return body | ({"error": error} if error else {})


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} happened"}})


def scorer_answering(reply: httpx.Response) -> tuple[RemoteItemScorer, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return reply

    client = EvalClient(
        "http://model-tier", "evs_key", retry=RetryPolicy(attempts=2, backoff_s=0.0),
        transport=httpx.MockTransport(handle),
    )  # fmt: skip
    return RemoteItemScorer(client, concurrency=2), requests


ITEM = PendingItem(7, "item-7", QUERY, RESPONSE)


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (httpx.Response(200, json=answer(42)), ItemOutcome(7, result_id=42)),
        (
            httpx.Response(200, json=answer(43, {"code": "score_line_missing", "message": "no line"})),
            ItemOutcome(7, result_id=43),
        ),
        (
            error(400, "audio_unreadable"),
            ItemOutcome(7, error_code="audio_unreadable", error_message="audio_unreadable happened"),
        ),
        (
            error(413, "audio_too_large"),
            ItemOutcome(7, error_code="audio_too_large", error_message="audio_too_large happened"),
        ),
    ],
)
def test_answers_become_outcomes(reply: httpx.Response, outcome: ItemOutcome) -> None:
    scorer, requests = scorer_answering(reply)
    assert scorer.score_items([ITEM], "scores") == [outcome]
    assert requests[0].headers["authorization"] == "Bearer evs_key"
    assert requests[0].url.path == "/v1/score"


@pytest.mark.parametrize("status", [429, 503, 504])
def test_a_busy_model_tier_is_transient_not_the_items_fault(status: int) -> None:
    scorer, requests = scorer_answering(error(status, "overloaded"))
    with pytest.raises(ServiceBusy):
        scorer.score_items([ITEM], "scores")
    assert len(requests) == (2 if status != 504 else 1)  # the client retried 429/503 first


def test_a_refused_key_is_a_setup_error() -> None:
    scorer, _ = scorer_answering(error(401, "unauthorized"))
    with pytest.raises(ConfigurationError, match="refused the worker's key"):
        scorer.score_items([ITEM], "scores")


def test_a_missing_file_fails_its_item_only() -> None:
    scorer, requests = scorer_answering(httpx.Response(200, json=answer(1)))
    gone = PendingItem(8, "item-8", "/nonexistent/q.wav", RESPONSE)
    outcomes = scorer.score_items([ITEM, gone], "scores")
    assert outcomes[0] == ItemOutcome(7, result_id=1)
    assert outcomes[1].error_code == "audio_unreadable" and outcomes[1].result_id is None
    assert len(requests) == 1
