"""`evalsvc score` and `evalsvc tiny-model`: JSON shape and exit codes, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from tests.helpers import EXAMPLES

QUERY = str(EXAMPLES / "query.wav")
RESPONSE = str(EXAMPLES / "response.wav")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths) -> Path:
    """A data directory where `--model tiny` finds its model already built (copied, not rebuilt)."""
    data_dir = tmp_path_factory.mktemp("cli-data")
    shutil.copytree(tiny_paths.root, Settings(data_dir=data_dir).tiny_model_dir)
    return data_dir


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_score_prints_the_documented_json(capsys: pytest.CaptureFixture[str], tiny_data_dir: Path) -> None:
    code, out, _ = run_cli(
        capsys, "score", QUERY, RESPONSE, "--model", "tiny", "--data-dir", str(tiny_data_dir)
    )
    assert code == EXIT_OK
    payload = json.loads(out)
    assert set(payload["scores"]) == {"NS", "WA", "EU", "ES", "avg"}
    assert all(1.0 <= value <= 5.0 for value in payload["scores"].values())
    assert payload["assessment"] is None
    assert payload["model"]["prompt_version"] == "empathyeval-v1"
    assert len(payload["model"]["fingerprint"]) == 64
    for side in ("query", "response"):
        assert len(payload["audio"][side]["sha256"]) == 64
        assert payload["audio"][side]["duration_s"] > 0.5
    assert {"decode_ms", "features_ms", "model_ms", "total_ms"} <= set(payload["timings_ms"])


def test_both_mode_adds_the_assessment(capsys: pytest.CaptureFixture[str], tiny_data_dir: Path) -> None:
    code, out, _ = run_cli(
        capsys, "score", QUERY, RESPONSE, "--mode", "both", "--model", "tiny",
        "--data-dir", str(tiny_data_dir), "--max-new-tokens", "8",
    )  # fmt: skip
    assert code == EXIT_OK
    payload = json.loads(out)
    assert isinstance(payload["assessment"], str)
    assert payload["scores"] is not None
    assert payload["model"]["decoding"] == {"max_new_tokens": 8, "greedy": True}


def test_bad_audio_exits_2_with_the_code(
    capsys: pytest.CaptureFixture[str], tiny_data_dir: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00not really a wav file at all")
    code, out, err = run_cli(
        capsys, "score", str(garbage), RESPONSE, "--model", "tiny", "--data-dir", str(tiny_data_dir)
    )
    assert code == EXIT_USER_ERROR
    assert out == ""
    assert "audio_unreadable" in err
    assert "Traceback" not in err


def test_missing_file_exits_2(
    capsys: pytest.CaptureFixture[str], tiny_data_dir: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys,
        "score",
        str(tmp_path / "nope.wav"),
        RESPONSE,
        "--model",
        "tiny",
        "--data-dir",
        str(tiny_data_dir),
    )
    assert code == EXIT_USER_ERROR
    assert "nope.wav" in err


def test_invalid_parameter_exits_2(capsys: pytest.CaptureFixture[str], tiny_data_dir: Path) -> None:
    code, _, err = run_cli(
        capsys,
        "score",
        QUERY,
        RESPONSE,
        "--model",
        "tiny",
        "--data-dir",
        str(tiny_data_dir),
        "--max-new-tokens",
        "0",
    )
    assert code == EXIT_USER_ERROR
    assert "invalid_parameter" in err and "max_new_tokens" in err


def test_missing_model_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "score", QUERY, RESPONSE, "--model", str(tmp_path / "no-model"))
    assert code == EXIT_CONFIG_ERROR
    assert "model_load_failed" in err


def test_tiny_model_command_is_reproducible(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "tiny-model", str(tmp_path / "a"), "--seed", "3")
    assert code == EXIT_OK
    first = json.loads(out)
    assert Path(first["model"], "config.json").is_file()
    _, out_again, _ = run_cli(capsys, "tiny-model", str(tmp_path / "b"), "--seed", "3")
    assert json.loads(out_again)["backbone"] == first["backbone"]


def test_console_script_runs_end_to_end(tiny_data_dir: Path) -> None:
    """The installed `evalsvc` entry point, in a fresh process, as the README runs it."""
    script = Path(sys.executable).with_name("evalsvc")
    completed = subprocess.run(
        [str(script), "score", QUERY, RESPONSE, "--model", "tiny", "--data-dir", str(tiny_data_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == EXIT_OK, completed.stderr
    assert json.loads(completed.stdout)["scores"]["avg"] > 0


def test_the_captioner_without_its_adapter_exits_3_saying_what_to_use(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(
        capsys, "score", QUERY, RESPONSE, "--model", "Qwen/Qwen3-Omni-30B-A3B-Captioner",
        "--data-dir", str(tmp_path), "--no-store",
    )  # fmt: skip
    assert code == EXIT_CONFIG_ERROR and out == ""
    assert "model_not_a_judge" in err and "Qwen/Qwen3-Omni-30B-A3B-Instruct" in err


def test_score_help_lists_the_model_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for profile in ("empathyeval", "zero-shot", "zero-shot-thinking", "tiny"):
        assert profile in help_text
    assert (
        "Qwen3-Omni-30B-A3B-Instruct" in help_text and "Captioner without the adapter is refused" in help_text
    )
