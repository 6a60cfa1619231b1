"""The API's documents against their real consumers: schemathesis for /openapi.json, Chromium for /docs.

Schemathesis (its CLI, as a user runs it) generates requests from `/openapi.json` for a bounded time
against the PostgreSQL twin of the main test server, with a seeded run and result of its tenant, so
the report and bulk routes work on real rows, and checks every answer: no 5xx, every status,
media type, header and body as documented, schema-invalid input refused, no access without a key.
Chromium renders `/docs` with every host but the server unresolvable, and its network log must show
that the page fetched nothing from anywhere else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from evalsvc.api.auth import PUBLIC_PATHS
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.store import RunItem, RunItemSpec, Store, grant_results
from evalsvc.store.tenants import ensure_tenant as tenant_named
from tests.api.harness import AUTH_SERVER_FLAGS, RunningServer, shared_server
from tests.helpers import running_in_ci
from tests.store.factories import SeededItem, seed_run

SCHEMATHESIS = Path(sys.executable).with_name("st")
SCHEMATHESIS_SECONDS = 60
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ERROR_SCHEMAS = {"#/components/schemas/ErrorResponse", "#/components/schemas/ManifestInvalidResponse"}


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths
) -> RunningServer:
    return shared_server(
        request.config, tmp_path_factory, tiny_paths, "auth-pg", AUTH_SERVER_FLAGS, postgres=True
    )


@pytest.fixture(scope="module")
def document(server: RunningServer) -> dict[str, Any]:
    return httpx.get(f"{server.url}/openapi.json").json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_root_answers_json_as_documented(server: RunningServer, document: dict[str, Any]) -> None:
    answer = httpx.get(f"{server.url}/")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["service"] == "evalsvc" and answer.json()["docs"] == "/docs"
    assert "application/json" in document["paths"]["/"]["get"]["responses"]["200"]["content"]
    key = {"X-API-Key": server.api_key("root")}
    assert httpx.get(f"{server.url}/info", headers=key).status_code == 404  # LitServe's, undocumented


def test_every_error_answer_is_documented_with_the_error_body(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/json"], (method, path, status)
                assert response["content"]["application/json"]["schema"]["$ref"] in ERROR_SCHEMAS
        if path.startswith("/v1/"):
            assert {"401", "503"} <= set(operation["responses"]), (method, path)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in operation["responses"], (method, path)
        if "requestBody" in operation:
            assert {"400", "408", "413"} <= set(operation["responses"]), (method, path)


def test_both_ways_of_presenting_a_key_are_security_schemes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer KEY`",
    }
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]  # either one
    for _method, path, operation in operations(document):
        assert ("security" in operation) == (path in PUBLIC_PATHS), path
        assert operation.get("security", []) == []


def test_the_export_documents_its_three_media_types(document: dict[str, Any]) -> None:
    ok = document["paths"]["/v1/reports/runs/{run_id}/export"]["get"]["responses"]["200"]
    assert set(ok["content"]) == {"text/csv", "application/x-ndjson", "application/vnd.apache.parquet"}


def seed_for(server: RunningServer, tenant: str) -> tuple[int, int]:
    """A finished run of `tenant` (two systems, a failed item) and its first result's number."""
    store = Store.from_settings(server.settings)
    tenant_id = tenant_named(store, tenant).id
    items = [
        SeededItem(
            RunItemSpec(f"item-{i}", "q.wav", "r.wav", system=f"sys-{i % 2}", dataset="set", emotion="sad"),
            f"{i:064x}",
            f"{i + 100:064x}",
            scores=(1.0 + i % 4, 2.0, 3.0, 4.0) if i != 5 else None,
            error="audio_unreadable" if i == 5 else None,
        )
        for i in range(12)
    ]
    run_id = seed_run(store, items, mode="scores", tenant_id=tenant_id, name="schemathesis")
    with store.session() as session:  # what the bulk worker does for a run of a tenant
        result_ids = session.scalars(
            select(RunItem.result_id).where(RunItem.run_id == run_id, RunItem.result_id.is_not(None))
        ).all()
        grants = grant_results(session, tenant_id, result_ids)
    store.dispose()
    return run_id, min(grant.number for grant in grants.values())


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    server: RunningServer, tmp_path: Path
) -> None:
    key = server.api_key("schemathesis")
    run_id, result_number = seed_for(server, "schemathesis")
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[auth.openapi.bearer]\nbearer = "{key}"\n[auth.openapi.apiKey]\napi_key = "{key}"\n'
        f'[parameters]\n"path.run_id" = {run_id}\n"path.result_id" = {result_number}\n'
    )
    report = tmp_path / "report.json"
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", f"{server.url}/openapi.json",
        "--checks", "all",
        # Data valid by the schema may still be refused: audio that does not decode (400), a run or
        # label set that does not exist (404); the schema cannot say "a playable WAV".
        "--exclude-checks", "positive_data_acceptance",
        "--max-time", str(SCHEMATHESIS_SECONDS), "--workers", "2", "--seed", "2601",
        "--suppress-health-check", "all", "--request-timeout", "30",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    done = subprocess.run(  # in tmp_path: schemathesis keeps a cache in its working directory
        command, capture_output=True, text=True, timeout=SCHEMATHESIS_SECONDS + 120, cwd=tmp_path
    )
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {len(summary['failures'])} failures")  # for the log
    assert done.returncode == 0 and summary["failures"] == [] and summary["errors"] == [], done.stdout[:8000]
    assert cases["generated"] >= 300 and cases["with_failures"] == 0
    assert (
        summary["operations"]["tested"]
        == summary["operations"]["total"]
        == len(operations(httpx.get(f"{server.url}/openapi.json").json()))
    )
    log = server.log.read_text(errors="replace")
    assert "unexpected error" not in log, server.log_tail()


def page_requests(netlog: Path) -> list[tuple[str, str]]:
    """(URL, initiator) of every request a page made (Chromium's own requests have no origin)."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    return [
        (params["url"], params["initiator"])
        for params in starts
        if params.get("initiator", "not an origin") != "not an origin"
    ]


def test_docs_render_offline_in_chromium(server: RunningServer, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if running_in_ci():
            pytest.fail("chromium is not installed (.ci/run installs it; CI=true: this test must run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    html = httpx.get(f"{server.url}/docs").text
    assert "cdn." not in html and "https://" not in html
    netlog = tmp_path / "netlog.json"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # as on an air-gapped box
        f"--log-net-log={netlog}", "--virtual-time-budget=15000", "--dump-dom", f"{server.url}/docs",
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    requested = page_requests(netlog)
    origin = server.url
    assert requested and all(url.startswith(f"{origin}/") for url, _ in requested), requested
    assert {f"{origin}/docs/assets/swagger-ui-bundle.js", f"{origin}/openapi.json"} <= {
        url for url, _ in requested
    }
    # Swagger UI ran and rendered the operations of the document it fetched.
    for path in ("/v1/score", "/v1/runs/{run_id}/results", "/v1/reports/runs/{run_id}/export"):
        assert f'data-path="{path}"' in dom, path
    assert "btn authorize" in dom  # the Authorize button: the security schemes are there
