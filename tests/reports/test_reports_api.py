"""`GET /v1/reports/...` through the service's real auth middleware and error handlers, on both databases.

The app here is a bare FastAPI app with the same middleware, handlers and report routes the LitServe
app gets (no model is needed to read reports), driven in process by Starlette's TestClient.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from evalsvc.api.auth import AuthMiddleware, TenantResolver
from evalsvc.api.report_routes import PREFIX, add_report_routes
from evalsvc.api.responses import install_error_handlers
from evalsvc.api.server import build_server
from evalsvc.reports import Side, agreement_report, compare, labelled_scores, leaderboards, run_summary
from evalsvc.reports.labels import import_labels
from evalsvc.settings import Settings
from evalsvc.store import Store, create_tenant, issue_api_key
from tests.reports.builders import Item, add_run, random_items


@dataclass(frozen=True)
class Seeded:
    client: TestClient
    key_a: str
    key_b: str
    tenant_a: int
    run_a: int
    run_a2: int
    run_b: int
    items: list[Item]


@pytest.fixture(scope="module")
def seeded(module_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with module_store.session() as session:
        tenant_a, tenant_b = create_tenant(session, "team-a").id, create_tenant(session, "team-b").id
        _row, key_a = issue_api_key(session, tenant_a, "a")
        _row, key_b = issue_api_key(session, tenant_b, "b")
    items = random_items(np.random.default_rng(51), 200, prefix="api")
    run_a = add_run(module_store, items, name="a", tenant_id=tenant_a)
    run_a2 = add_run(module_store, random_items(np.random.default_rng(52), 200, prefix="api"), name="a2",
                     tenant_id=tenant_a, judge="judge-2")  # fmt: skip
    run_b = add_run(
        module_store, random_items(np.random.default_rng(53), 50, prefix="b"), name="b", tenant_id=tenant_b
    )
    labels = tmp_path_factory.mktemp("labels") / "labels.csv"
    labels.write_text("id,rater,NS,WA,EU,ES\n" + "".join(f"{item.key},r,3,4,2,5\n" for item in items[::3]))
    with module_store.session() as session:
        import_labels(session, labels, "mos", tenant_id=tenant_a)
    app = FastAPI()
    add_report_routes(app, module_store)
    install_error_handlers(app)
    app.add_middleware(AuthMiddleware, resolver=TenantResolver(module_store, auth_enabled=True))
    with TestClient(app, headers={"X-API-Key": key_a}) as client:
        yield Seeded(client, key_a, key_b, tenant_a, run_a, run_a2, run_b, items)


def test_json_reports_are_the_library_reports(module_store: Store, seeded: Seeded) -> None:
    client = seeded.client
    with module_store.session() as session:
        expected = {
            f"/v1/reports/runs/{seeded.run_a}/summary": run_summary(session, seeded.run_a, seeded.tenant_a),
            "/v1/reports/leaderboard?sort=NS": leaderboards(session, seeded.tenant_a, sort="NS"),
            f"/v1/reports/compare?run={seeded.run_a}&run={seeded.run_a2}&resamples=500&seed=2": compare(
                session, seeded.tenant_a, Side(seeded.run_a), Side(seeded.run_a2), resamples=500, seed=2
            ),
            f"/v1/reports/compare?run={seeded.run_a}&system=sys-a&system=sys-b&tie_margin=0": compare(
                session,
                seeded.tenant_a,
                Side(seeded.run_a, "sys-a"),
                Side(seeded.run_a, "sys-b"),
                tie_margin=0.0,
            ),
            f"/v1/reports/runs/{seeded.run_a}/agreement?labels=mos": agreement_report(
                labelled_scores(session, seeded.run_a, "mos", seeded.tenant_a)
            ),
        }
    for url, report in expected.items():
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.text)
        assert answer.json() == json.loads(report.model_dump_json()), url


def test_another_tenants_runs_and_labels_are_not_found(seeded: Seeded) -> None:
    client = seeded.client
    for url in (
        f"/v1/reports/runs/{seeded.run_b}/summary",
        f"/v1/reports/leaderboard?run={seeded.run_b}",
        f"/v1/reports/compare?run={seeded.run_a}&run={seeded.run_b}",
        f"/v1/reports/runs/{seeded.run_b}/export",
        f"/v1/reports/runs/{seeded.run_b}/html",
    ):
        answer = client.get(url)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found"), url
    answer = client.get(
        f"/v1/reports/runs/{seeded.run_a}/agreement?labels=mos", headers={"X-API-Key": seeded.key_b}
    )
    assert answer.status_code == 404  # their run and our label set: neither is visible to them
    board = client.get("/v1/reports/leaderboard", headers={"X-API-Key": seeded.key_b}).json()
    assert sum(row["n"] for b in board["leaderboards"] for row in b["rows"]) <= 50
    assert (
        client.get(f"/v1/reports/runs/{seeded.run_a}/summary", headers={"X-API-Key": "nope"}).status_code
        == 401
    )


def test_bad_parameters_are_user_errors(seeded: Seeded) -> None:
    client = seeded.client
    for url, status, code in (
        ("/v1/reports/leaderboard?sort=median", 400, "invalid_parameter"),
        (f"/v1/reports/compare?run={seeded.run_a}", 400, "invalid_parameter"),
        (f"/v1/reports/compare?run={seeded.run_a}&run={seeded.run_a2}&resamples=0", 422, "validation_failed"),
        (
            f"/v1/reports/compare?run={seeded.run_a}&run={seeded.run_a2}&pair_by=voice",
            422,
            "validation_failed",
        ),
        (f"/v1/reports/runs/{seeded.run_a}/agreement", 422, "validation_failed"),
        (f"/v1/reports/runs/{seeded.run_a}/export?format=xlsx", 422, "validation_failed"),
        ("/v1/reports/runs/0/summary", 422, "validation_failed"),
    ):
        answer = client.get(url)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), url


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_download(seeded: Seeded, fmt: str) -> None:
    answer = seeded.client.get(
        f"/v1/reports/runs/{seeded.run_a}/export", params={"format": fmt, "system": "sys-b"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="run-{seeded.run_a}.{fmt}"'
    if fmt == "parquet":
        rows = pq.read_table(io.BytesIO(answer.content)).to_pylist()
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in answer.text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["item_key"] for row in rows] == [item.key for item in seeded.items if item.system == "sys-b"]


def test_the_html_page(seeded: Seeded) -> None:
    answer = seeded.client.get(f"/v1/reports/runs/{seeded.run_a}/html", params={"labels": "mos"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "data:image/png;base64," in answer.text and "Agreement with human ratings" in answer.text


def test_the_service_app_has_the_report_routes(tmp_path: Path) -> None:
    """`evalsvc serve` builds its app with these routes, each a plain route (metrics label by path)."""
    app = build_server(Settings(model="tiny", data_dir=tmp_path, device="cpu")).app
    paths = {getattr(route, "path", None) for route in app.router.routes}
    assert {f"{PREFIX}/runs/{{run_id}}/summary", f"{PREFIX}/leaderboard", f"{PREFIX}/compare"} <= paths
