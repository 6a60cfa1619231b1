"""The local CLI and `serve --no-auth` are one tenant: what `bulk run`, `score` and `labels import`
store in a database, a server without keys on that database shows (its real routes and auth
middleware, in process). `--tenant` names another tenant, which must exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from evalsvc.api.auth import AuthMiddleware, TenantResolver
from evalsvc.api.report_routes import add_report_routes
from evalsvc.api.responses import install_error_handlers
from evalsvc.api.run_routes import add_run_routes
from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.results import get_result
from evalsvc.store.tenants import LOCAL_TENANT
from tests.bulk.conftest import SMALL


def no_auth_app(store: Store, settings: Settings) -> FastAPI:
    """The routes `evalsvc serve --no-auth` serves runs and reports with, and its auth middleware."""
    app = FastAPI()
    add_report_routes(app, store)
    add_run_routes(app, settings, store)
    install_error_handlers(app)
    app.add_middleware(AuthMiddleware, resolver=TenantResolver(store, auth_enabled=False))
    return app


def test_what_the_cli_stores_a_no_auth_server_shows(
    capsys: pytest.CaptureFixture[str],
    tiny_paths: TinyModelPaths,
    pairs_dir: Path,
    small_manifest: Path,
    tmp_path: Path,
) -> None:
    model = [
        "--model",
        str(tiny_paths.model),
        "--adapter",
        str(tiny_paths.adapter),
        "--heads",
        str(tiny_paths.heads),
    ]
    data = ["--data-dir", str(tmp_path)]  # the embedded default: the SQLite file there
    assert (
        main(["bulk", "run", str(small_manifest), "--name", "local", "--no-progress", *model, *data])
        == EXIT_OK
    )
    run = json.loads(capsys.readouterr().out)
    assert main(["score", str(pairs_dir / "q0.wav"), str(pairs_dir / "r1.flac"), *model, *data]) == EXIT_OK
    scored = json.loads(capsys.readouterr().out)
    ratings = tmp_path / "mos.csv"
    ratings.write_text("id,NS,WA,EU,ES\nitem-00-0,4,4,4,4\nitem-00-1,2,2,2,2\nitem-01-0,3,3,3,3\n")
    assert main(["labels", "import", str(ratings), "--name", "mos", *data]) == EXIT_OK
    capsys.readouterr()
    assert main(["bulk", "list", *data]) == EXIT_OK
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["tenant"], listed["items"], listed["done"]) == (
        run["id"],
        LOCAL_TENANT,
        SMALL,
        SMALL,
    )

    settings = Settings(data_dir=tmp_path)
    store = Store.from_settings(settings)
    with TestClient(no_auth_app(store, settings)) as http:
        assert http.get(f"/v1/runs/{run['id']}").json()["done"] == SMALL
        assert http.get(f"/v1/reports/runs/{run['id']}/summary").json()["overall"]["items"] == SMALL
        agreement = http.get(f"/v1/reports/runs/{run['id']}/agreement?labels=mos")
        assert agreement.status_code == 200 and agreement.json()["matched"] == 3
    local = TenantResolver(store, auth_enabled=False).resolve(None)
    assert local is not None
    with store.session() as session:  # what GET /v1/results/{id} answers with
        assert get_result(session, scored["id"], tenant_id=local.id) is not None
    store.dispose()


def test_the_cli_can_name_an_existing_tenant_only(
    capsys: pytest.CaptureFixture[str], small_manifest: Path, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path)]
    code = main(["bulk", "run", str(small_manifest), "--name", "x", "--tenant", "tema-a", *data])
    assert code == EXIT_USER_ERROR
    assert "no tenant 'tema-a'" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "team-a", *data]) == EXIT_OK
    capsys.readouterr()
    code = main(["bulk", "submit", str(small_manifest), "--name", "x", "--tenant", "team-a", *data,
                 "--redis-url", "redis://127.0.0.1:1/0"])  # fmt: skip
    assert code == 3  # recorded for team-a, then Redis is unreachable
    capsys.readouterr()
    assert main(["bulk", "list", "--tenant", "team-a", *data]) == EXIT_OK
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["tenant"] == "team-a" and listed["status"] == "pending"
