"""`RemoteItemScorer`: how the HTTP model tier's answers become item outcomes (httpx MockTransport).

The model tier itself is tested end to end in tests/api/test_api_server.py; here the other side is an
external HTTP service, so its answers are scripted. The store is real (a SQLite file): the scorer
links an item to the stored result with the answer's content key, not to the answer's `id`, which is
the worker's tenant's own number for the result.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from evalsvc.bulk.scorers import RemoteItemScorer
from evalsvc.client import EvalClient, RetryPolicy
from evalsvc.errors import ConfigurationError, ServiceBusy
from evalsvc.store import ItemOutcome, Store, ensure_model_version, store_results
from evalsvc.store.run_records import PendingItem
from tests.helpers import EXAMPLES
from tests.store.factories import make_fingerprint, make_record

QUERY, RESPONSE = str(EXAMPLES / "query.wav"), str(EXAMPLES / "response.wav")
FINGERPRINT = make_fingerprint()
RECORD = make_record(1, FINGERPRINT.key)
MODEL = FINGERPRINT.to_dict()
AUDIO = {
    "query": {"sha256": RECORD.query_sha256, "duration_s": 1.0},
    "response": {"sha256": RECORD.response_sha256, "duration_s": 1.0},
}
TENANT_NUMBER = 900  # what the server answers as `id`: never the stored row's id here


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", auto_upgrade=True)


@pytest.fixture
def stored_id(store: Store) -> int:
    """The id of the result the scripted answers describe, stored as the model tier would have."""
    with store.session() as session:
        [result_id] = store_results(session, ensure_model_version(session, FINGERPRINT), [RECORD]).values()
    assert result_id != TENANT_NUMBER
    return result_id


def answer(result_id: int | None, error: dict[str, str] | None = None) -> dict[str, object]:
    scores = None if error else {"NS": 3.0, "WA": 3.0, "EU": 3.0, "ES": 3.0, "avg": 3.0}
    body = {"id": result_id, "cached": False, "scores": scores, "assessment": None, "model": MODEL,
            "audio": AUDIO, "timings_ms": {}}  # fmt: skip
    return body | ({"error": error} if error else {})


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} happened"}})


def scorer_answering(reply: httpx.Response, store: Store) -> tuple[RemoteItemScorer, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return reply

    client = EvalClient(
        "http://model-tier", "evs_key", retry=RetryPolicy(attempts=2, backoff_s=0.0),
        transport=httpx.MockTransport(handle),
    )  # fmt: skip
    return RemoteItemScorer(client, concurrency=2, store=store), requests


ITEM = PendingItem(7, "item-7", QUERY, RESPONSE)


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (httpx.Response(200, json=answer(TENANT_NUMBER)), ItemOutcome(7, result_id=-1)),
        (
            httpx.Response(
                200, json=answer(TENANT_NUMBER, {"code": "score_line_missing", "message": "no line"})
            ),
            ItemOutcome(7, result_id=-1),
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
def test_answers_become_outcomes(
    reply: httpx.Response, outcome: ItemOutcome, store: Store, stored_id: int
) -> None:
    """A scored pair is linked to the stored row (-1 above stands for its id)."""
    if outcome.result_id == -1:
        outcome = ItemOutcome(7, result_id=stored_id)
    scorer, requests = scorer_answering(reply, store)
    assert scorer.score_items([ITEM], "scores") == [outcome]
    assert requests[0].headers["authorization"] == "Bearer evs_key"
    assert requests[0].url.path == "/v1/score"


@pytest.mark.parametrize("status", [429, 503, 504])
def test_a_busy_model_tier_is_transient_not_the_items_fault(status: int, store: Store) -> None:
    scorer, requests = scorer_answering(error(status, "overloaded"), store)
    with pytest.raises(ServiceBusy):
        scorer.score_items([ITEM], "scores")
    assert len(requests) == (2 if status != 504 else 1)  # the client retried 429/503 first


def test_a_refused_key_is_a_setup_error(store: Store) -> None:
    scorer, _ = scorer_answering(error(401, "unauthorized"), store)
    with pytest.raises(ConfigurationError, match="refused the worker's key"):
        scorer.score_items([ITEM], "scores")


def test_a_missing_file_fails_its_item_only(store: Store, stored_id: int) -> None:
    scorer, requests = scorer_answering(httpx.Response(200, json=answer(TENANT_NUMBER)), store)
    gone = PendingItem(8, "item-8", "/nonexistent/q.wav", RESPONSE)
    outcomes = scorer.score_items([ITEM, gone], "scores")
    assert outcomes[0] == ItemOutcome(7, result_id=stored_id)
    assert outcomes[1].error_code == "audio_unreadable" and outcomes[1].result_id is None
    assert len(requests) == 1


def test_a_result_missing_from_the_workers_database_is_a_setup_error(store: Store) -> None:
    """The model tier stored it elsewhere (another database): linking to its `id` would be wrong."""
    scorer, _ = scorer_answering(httpx.Response(200, json=answer(TENANT_NUMBER)), store)
    with pytest.raises(ConfigurationError, match="same EVALSVC_DATABASE_URL"):
        scorer.score_items([ITEM], "scores")
