"""`evalsvc score --judge ...` as a user runs it: the tiny Whisper, a scripted OpenAI-compatible server
on loopback, the default SQLite store in a fresh data directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_USER_ERROR
from evalsvc.judges.tiny import tiny_whisper_dir
from evalsvc.settings import Settings
from tests.helpers import EXAMPLES
from tests.judges.openai_server import ScriptedOpenAI, serving

QUERY, RESPONSE = str(EXAMPLES / "query.wav"), str(EXAMPLES / "response.wav")


def test_score_with_an_llm_judge_stores_and_reuses_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
    judge_models_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    whisper = tiny_whisper_dir(judge_models_settings.data_dir, judge_models_settings.tiny_seed)
    if whisper.is_dir():  # built by an earlier test of the session: no second build
        shutil.copytree(whisper, tiny_whisper_dir(tmp_path, judge_models_settings.tiny_seed))
    server = ScriptedOpenAI()
    with serving(server) as base_url:
        for name, value in {
            "DATA_DIR": str(tmp_path),
            "ASR_MODEL": "tiny",
            "ASR_MAX_NEW_TOKENS": "8",
            "LLM_BASE_URL": base_url,
            "LLM_MODEL": "judge-model",
        }.items():
            monkeypatch.setenv(f"EVALSVC_{name}", value)
        assert main(["score", QUERY, RESPONSE, "--judge", "llm-mos"]) == EXIT_OK
        first = json.loads(capsys.readouterr().out)
        assert main(["score", QUERY, RESPONSE, "--judge", "llm-mos"]) == EXIT_OK
        second = json.loads(capsys.readouterr().out)
        assert len(server.requests) == 1
        reference = ["--reference-transcript", "I am so sorry about your dog."]
        assert main(["score", QUERY, RESPONSE, "--judge", "llm-ab", *reference]) == EXIT_OK
        ab = json.loads(capsys.readouterr().out)
        assert len(server.requests) == 3

        assert main(["score", QUERY, RESPONSE, "--judge", "llm-ab"]) == EXIT_USER_ERROR
        assert "reference_audio or reference_transcript" in capsys.readouterr().err
        assert main(["score", QUERY, RESPONSE, *reference]) == EXIT_USER_ERROR
        assert "for the llm-ab judges" in capsys.readouterr().err
        remote = ["--server", "http://127.0.0.1:9", "--judge", "llm-mos"]  # asks the server, not the LLM
        assert main(["score", QUERY, RESPONSE, *remote]) == EXIT_CONFIG_ERROR
        assert "server_unreachable" in capsys.readouterr().err
        assert len(server.requests) == 3
    assert (first["judge"], first["cached"], first["result"]) == ("llm-mos", False, {"score": 2})
    assert first["texts"]["query"]["transcript"] is not None and first["model"]["judge"] == "llm-mos"
    assert (second["cached"], second["id"], second["result"]) == (True, first["id"], first["result"])
    assert second["texts"] == first["texts"]  # the stored transcripts, read back
    assert ab["result"]["flipped"] is False and ab["texts"]["reference"]["transcript"].startswith("I am")
