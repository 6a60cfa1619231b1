"""`/v1/runs` on the real routes, auth middleware and error handlers (in process), Redis, PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from evalsvc.api.auth import AuthMiddleware, TenantResolver
from evalsvc.api.responses import install_error_handlers
from evalsvc.api.run_routes import add_run_routes
from evalsvc.settings import Settings
from evalsvc.store import Run, Store, issue_api_key
from evalsvc.store.tenants import ensure_tenant
from tests.bulk.conftest import SMALL

pytestmark = pytest.mark.integration


def build_app(settings: Settings, store: Store) -> FastAPI:
    """The parts of `evalsvc serve` the run routes use: auth, error handlers, the routes."""
    app = FastAPI()
    add_run_routes(app, settings, store)
    install_error_handlers(app)
    app.add_middleware(AuthMiddleware, resolver=TenantResolver(store, auth_enabled=True))
    return app


def key_of(store: Store, tenant: str) -> dict[str, str]:
    ref = ensure_tenant(store, tenant)
    with store.session() as session:
        _row, key = issue_api_key(session, ref.id, "test")
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def http(queued_settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(build_app(queued_settings, store)) as client:
        yield client


def upload(
    client: TestClient, headers: dict[str, str], manifest: bytes, name: str = "manifest.jsonl", **form: str
) -> httpx.Response:
    return client.post(
        "/v1/runs", headers=headers, files={"manifest": (name, manifest)}, data={"name": "tones", **form}
    )


def test_a_run_over_http_from_upload_to_paginated_results(
    http: TestClient, store: Store, small_manifest: Path, work: Callable[[], bool]
) -> None:
    alice, bob = key_of(store, "alice"), key_of(store, "bob")
    assert upload(http, {}, small_manifest.read_bytes()).status_code == 401

    created = upload(http, alice, small_manifest.read_bytes())
    assert created.status_code == 201, created.text
    run = created.json()
    assert (run["status"], run["items"], run["pending"], run["queued_jobs"]) == ("running", SMALL, SMALL, 2)

    assert http.get(f"/v1/runs/{run['id']}", headers=bob).json()["error"]["code"] == "not_found"
    assert http.post(f"/v1/runs/{run['id']}/cancel", headers=bob).status_code == 404
    assert http.get(f"/v1/runs/{run['id']}/results", headers=bob).status_code == 404

    work()
    status = http.get(f"/v1/runs/{run['id']}", headers=alice).json()
    assert (status["status"], status["done"]) == ("done", SMALL)

    rows: list[dict[str, object]] = []
    url: str | None = f"/v1/runs/{run['id']}/results?limit=8"
    while url is not None:
        page = http.get(url, headers=alice)
        assert page.status_code == 200 and page.headers["content-type"] == "application/x-ndjson"
        rows += [json.loads(line) for line in page.text.splitlines()]
        url = page.links.get("next", {}).get("url")
    assert len(rows) == SMALL and len({row["item_key"] for row in rows}) == SMALL
    assert all(row["status"] == "done" and row["scores"] is not None for row in rows)

    as_csv = http.get(f"/v1/runs/{run['id']}/results?format=csv&limit=5", headers=alice)
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert [row["item_key"] for row in table] == [row["item_key"] for row in rows[:5]]
    assert as_csv.headers["x-next-cursor"]


def test_an_invalid_manifest_is_rejected_with_every_line_and_nothing_is_recorded(
    http: TestClient, store: Store
) -> None:
    alice = key_of(store, "alice")
    rows = [
        {"id": "a", "query_audio": "q0.wav", "response_audio": "r0.flac", "system": "s", "dataset": "d"},
        {
            "id": "b",
            "query_audio": "../outside.wav",
            "response_audio": "r0.flac",
            "system": "s",
            "dataset": "d",
        },
        {"id": "a", "query_audio": "q1.wav", "response_audio": "nope.flac", "system": "s", "dataset": "d"},
    ]
    body = "".join(json.dumps(row) + "\n" for row in rows).encode()
    answer = upload(http, alice, body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "manifest_invalid"
    assert [problem["line"] for problem in error["problems"]] == [2, 3, 3]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0

    skipped = upload(http, alice, body, skip_invalid="true")
    assert skipped.status_code == 201 and skipped.json()["items"] == 1
    assert upload(http, alice, body, name="manifest.txt").json()["error"]["code"] == "manifest_invalid"


def test_cancel_over_http(
    http: TestClient, store: Store, small_manifest: Path, work: Callable[[], bool]
) -> None:
    alice = key_of(store, "alice")
    run = upload(http, alice, small_manifest.read_bytes()).json()
    cancelled = http.post(f"/v1/runs/{run['id']}/cancel", headers=alice)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert work() is False
    assert http.get(f"/v1/runs/{run['id']}", headers=alice).json()["pending"] == SMALL


def test_with_redis_down_nothing_is_recorded_and_the_answer_is_503(
    bulk_settings: Settings, store: Store, small_manifest: Path
) -> None:
    with TestClient(build_app(bulk_settings, store)) as client:  # bulk_settings: Redis on port 1
        answer = upload(client, key_of(store, "alice"), small_manifest.read_bytes())
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "queue_unavailable"
    assert answer.headers["retry-after"] == "1"
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0


def test_evalsvc_serve_has_the_run_routes(tmp_path: Path) -> None:
    from evalsvc.api.server import build_server  # LitServe: imported by this test only

    app = build_server(Settings(model="tiny", data_dir=tmp_path, device="cpu")).app
    paths = {getattr(route, "path", None) for route in app.router.routes}
    assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/cancel", "/v1/runs/{run_id}/results"} <= paths
    document = app.openapi()
    assert "multipart/form-data" in document["paths"]["/v1/runs"]["post"]["requestBody"]["content"]


def test_a_run_over_http_takes_its_judge_and_refuses_ab_rows_without_a_reference(
    http: TestClient, store: Store
) -> None:
    alice = key_of(store, "alice")
    row = {"id": "a", "query_audio": "q0.wav", "response_audio": "r0.flac", "system": "s", "dataset": "d"}
    body = (json.dumps(row) + "\n").encode()
    refused = upload(http, alice, body, judge="llm-ab")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "manifest_invalid"
    assert (
        "needs reference_audio or reference_transcript" in refused.json()["error"]["problems"][0]["message"]
    )
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
    with_reference = (json.dumps(row | {"reference_transcript": "I am sorry."}) + "\n").encode()
    created = upload(http, alice, with_reference, judge="llm-ab")
    assert created.status_code == 201, created.text
    assert (created.json()["judge"], created.json()["group_id"]) == ("llm-ab", None)
    assert upload(http, alice, body, judge="gpt").status_code == 422


def test_a_run_over_http_takes_several_judges_as_a_group_with_a_budget(
    http: TestClient, queued_settings: Settings, store: Store
) -> None:
    """`judge=a,b` and `max_cost_usd`: the CLI's `--judge a,b --max-cost USD` for an API tenant; without
    the server's LLM prices a budget could not be kept, so it is refused before anything is recorded."""
    alice = key_of(store, "alice")
    row = {"id": "a", "query_audio": "q0.wav", "response_audio": "r0.flac", "system": "s", "dataset": "d"}
    body = (json.dumps(row) + "\n").encode()
    judges = "llm-mos,llm-mos+emotion,empathyeval"
    unpriced = upload(http, alice, body, judge=judges, max_cost_usd="0.5")
    assert unpriced.status_code == 400, unpriced.text
    assert unpriced.json()["error"]["code"] == "invalid_parameter"
    assert "max_cost_usd needs prices" in unpriced.json()["error"]["message"]
    for form in ({"judge": "llm-mos,gpt"}, {"judge": "llm-mos", "max_cost_usd": "0"}):
        refused = upload(http, alice, body, **form)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_failed", form
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0

    priced = queued_settings.model_copy(
        update={"llm_price_input_per_1m": 2.5, "llm_price_output_per_1m": 10.0}
    )
    with TestClient(build_app(priced, store)) as client:
        created = upload(client, alice, body, judge=judges, max_cost_usd="0.5")
        assert created.status_code == 201, created.text
        first = created.json()
        assert len(first["runs"]) == 3 and first["runs"][0] == first["id"]
        assert first["queued_jobs"] == 3  # one shard per run of the group
        states = [client.get(f"/v1/runs/{run_id}", headers=alice).json() for run_id in first["runs"]]
    assert [state["judge"] for state in states] == judges.split(",")
    assert {state["group_id"] for state in states} == {first["id"]}
    assert all("runs" not in state for state in states)  # POST only
    with store.session() as session:
        budgets = session.scalars(select(Run.max_cost_usd).where(Run.id.in_(first["runs"]))).all()
    assert budgets == [0.5, 0.5, 0.5]
