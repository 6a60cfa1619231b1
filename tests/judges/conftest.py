"""Fixtures of the LLM-judge tests: the tiny Whisper and emotion classifier (built once per session,
loaded through transformers), and LLM clients pointed at a scripted server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from evalsvc.judges.emotion_models import TransformersEmotionLabeller
from evalsvc.judges.transcripts import WhisperTranscriber
from evalsvc.llm_client import LLMClient, LLMConfig, Prices
from evalsvc.settings import Settings
from tests.judges.openai_server import ScriptedOpenAI, serving

# A fresh migrated database per test, once on SQLite and once on PostgreSQL (the store tests' own;
# PostgreSQL through postgres_admin_url of tests/conftest.py).
from tests.store.conftest import db_url, migrated_url, store  # noqa: F401

MODEL = "judge-model"


@pytest.fixture(scope="session")
def judge_models_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("judge-models"),
        asr_model="tiny",
        asr_max_new_tokens=8,
        emotion_model="tiny",
        emotion_backend="transformers",
        audio_max_seconds=60.0,
    )


@pytest.fixture(scope="session")
def transcriber(judge_models_settings: Settings) -> WhisperTranscriber:
    return WhisperTranscriber.load(judge_models_settings)


@pytest.fixture(scope="session")
def labeller(judge_models_settings: Settings) -> TransformersEmotionLabeller:
    return TransformersEmotionLabeller.load(judge_models_settings)


ClientFactory = Callable[..., AbstractContextManager[tuple[LLMClient, ScriptedOpenAI]]]


@pytest.fixture
def llm() -> ClientFactory:
    """`with llm(server, **config) as (client, server):` a client of `server` running on loopback."""

    @contextmanager
    def start(
        server: ScriptedOpenAI | None = None, *, api_key: str | None = "sk-test", **config: object
    ) -> Iterator[tuple[LLMClient, ScriptedOpenAI]]:
        server = server or ScriptedOpenAI()
        with serving(server) as base_url:
            options = {"max_retries": 0, "timeout_s": 10.0, "prices": Prices(2.5, 10.0)} | config
            client = LLMClient(LLMConfig(base_url=base_url, model=MODEL, **options), api_key)  # type: ignore[arg-type]
            try:
                yield client, server
            finally:
                client.close()

    return start


def example_clip_paths() -> list[Path]:
    root = Path(__file__).resolve().parents[2] / "examples" / "pairs"
    return sorted(root.glob("*.wav"))[:3]
