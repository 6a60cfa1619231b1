"""`evalsvc db ...` and the store behind `evalsvc score`, run as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.engine import Engine
from evalsvc.engine.heads import ScoreHeads
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from evalsvc.store.migrate import head_revision
from tests.helpers import EXAMPLES

PAIR = (str(EXAMPLES / "query.wav"), str(EXAMPLES / "response.wav"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, json.loads(captured.out) if captured.out else {}, captured.err


def _refuse(*_args: object) -> Engine:
    raise AssertionError("the model was loaded")


@pytest.fixture
def data_dir(tmp_path: Path, tiny_paths: TinyModelPaths) -> Path:
    """A data directory where `--model tiny` finds its model already built (copied, not rebuilt)."""
    shutil.copytree(tiny_paths.root, Settings(data_dir=tmp_path).tiny_model_dir)
    return tmp_path


def test_db_upgrade_current_downgrade(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, shown, _ = run_cli(capsys, "db", "current", "--database-url", db_url)
    assert (code, shown["current"], shown["head"]) == (EXIT_OK, None, head_revision())

    code, moved, _ = run_cli(capsys, "db", "upgrade", "--database-url", db_url)
    assert (code, moved["from"], moved["to"]) == (EXIT_OK, None, head_revision())
    assert run_cli(capsys, "db", "current", "--database-url", db_url)[1]["current"] == head_revision()

    code, moved, _ = run_cli(capsys, "db", "downgrade", "base", "--database-url", db_url)
    assert (code, moved["from"], moved["to"]) == (EXIT_OK, head_revision(), None)


def test_db_current_does_not_create_the_default_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, shown, _ = run_cli(capsys, "db", "current", "--data-dir", str(tmp_path))
    assert (code, shown["current"]) == (EXIT_OK, None)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "exit_code", "code"),
    [
        (["db", "upgrade", "--database-url", "mysql://x/y"], EXIT_USER_ERROR, "invalid_parameter"),
        (["db", "upgrade", "--database-url", "not a url"], EXIT_USER_ERROR, "invalid_parameter"),
        (["db", "downgrade", "nonsense", "--database-url", "sqlite:///{tmp}/x.db"], EXIT_USER_ERROR, "invalid_parameter"),
        (["db", "upgrade", "--database-url", "postgresql+psycopg://u@127.0.0.1:1/x"], EXIT_CONFIG_ERROR, "database_unavailable"),
        (["db", "upgrade", "--database-url", "sqlite:////no/such/dir/x.db"], EXIT_CONFIG_ERROR, "database_unavailable"),
    ],
    ids=["unsupported", "unparseable", "unknown-revision", "unreachable", "unopenable"],
)  # fmt: skip
def test_db_mistakes_are_clear_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], exit_code: int, code: str
) -> None:
    status, out, err = run_cli(capsys, *(arg.format(tmp=tmp_path) for arg in argv))
    assert (status, out) == (exit_code, {})
    assert f"error [{code}]" in err


def test_db_upgrade_works_from_any_directory(tmp_path: Path) -> None:
    """The installed console script finds the migrations without alembic.ini in the working directory."""
    script = Path(sys.executable).with_name("evalsvc")
    completed = subprocess.run(
        [str(script), "db", "upgrade", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == EXIT_OK, completed.stderr
    assert json.loads(completed.stdout)["to"] == head_revision()


def test_score_answers_the_same_pair_from_the_store_without_the_model(
    capsys: pytest.CaptureFixture[str], data_dir: Path, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_flags = ["--model", "tiny", "--data-dir", str(data_dir), "--database-url", migrated_url]
    code, first, _ = run_cli(capsys, "score", *PAIR, *store_flags)
    assert (code, first["cached"]) == (EXIT_OK, False)
    assert isinstance(first["id"], int)

    monkeypatch.setattr(Engine, "load", _refuse)
    code, second, _ = run_cli(capsys, "score", *PAIR, *store_flags)

    assert (code, second["cached"], second["id"]) == (EXIT_OK, True, first["id"])
    assert second["scores"] == first["scores"]
    assert second["model"] == first["model"]
    assert second["audio"] == first["audio"]
    assert "model_ms" not in second["timings_ms"]


def test_score_uses_the_default_sqlite_store(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, first, _ = run_cli(capsys, "score", *PAIR, "--model", "tiny", "--data-dir", str(data_dir))
    assert (code, first["cached"]) == (EXIT_OK, False)
    assert (data_dir / "evalsvc.sqlite3").is_file()
    code, second, _ = run_cli(capsys, "score", *PAIR, "--model", "tiny", "--data-dir", str(data_dir))
    assert (second["cached"], second["id"]) == (True, first["id"])


def test_no_store_neither_reads_nor_writes(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    flags = ["--model", "tiny", "--data-dir", str(data_dir)]
    run_cli(capsys, "score", *PAIR, *flags)
    code, answer, _ = run_cli(capsys, "score", *PAIR, *flags, "--no-store")
    assert (code, answer["id"], answer["cached"]) == (EXIT_OK, None, False)
    assert "model_ms" in answer["timings_ms"]


def test_new_heads_are_a_new_fingerprint(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    flags = ["--model", "tiny", "--data-dir", str(data_dir)]
    code, first, _ = run_cli(capsys, "score", *PAIR, *flags)
    heads = ScoreHeads.load(Settings(data_dir=data_dir).tiny_model_dir / "heads")
    with torch.no_grad():
        heads.linear.bias.add_(0.5)  # refitted heads: same backbone, other weights
    heads.save(data_dir / "refit-heads")

    code, refit, _ = run_cli(capsys, "score", *PAIR, *flags, "--heads", str(data_dir / "refit-heads"))

    assert (code, refit["cached"]) == (EXIT_OK, False)
    assert refit["id"] != first["id"]
    assert refit["model"]["heads_sha256"] != first["model"]["heads_sha256"]
    assert refit["model"]["backbone"] == first["model"]["backbone"]


def test_a_new_prompt_version_is_a_new_fingerprint(
    capsys: pytest.CaptureFixture[str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answered from the store before; with another prompt version the model is needed again."""
    flags = ["--model", "tiny", "--data-dir", str(data_dir)]
    run_cli(capsys, "score", *PAIR, *flags)
    monkeypatch.setattr(Engine, "load", _refuse)
    assert run_cli(capsys, "score", *PAIR, *flags)[1]["cached"] is True

    monkeypatch.setattr("evalsvc.engine.fingerprint.PROMPT_VERSION", "empathyeval-v2")
    with pytest.raises(AssertionError, match="the model was loaded"):
        main(["score", *PAIR, *flags])


def test_an_unmigrated_database_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], data_dir: Path, db_url: str
) -> None:
    status, out, err = run_cli(
        capsys, "score", *PAIR, "--model", "tiny", "--data-dir", str(data_dir), "--database-url", db_url
    )
    assert (status, out) == (EXIT_CONFIG_ERROR, {})
    assert "error [database_schema_outdated]" in err and "evalsvc db upgrade" in err
