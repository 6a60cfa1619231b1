"""Bulk runs judged by the LLM judges, as a user runs them (`evalsvc bulk ...`, `evalsvc report ...`),
on PostgreSQL, with the tiny Whisper and classifier and a scripted OpenAI-compatible server on
loopback that counts the requests it gets; the queued path through a real RQ worker and Redis."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from evalsvc.audio import AudioLimits
from evalsvc.bulk import jobs
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.rq_worker import ShardWorker
from evalsvc.bulk.scorers import LocalItemScorer
from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.judges.emotions import EMOTIONS
from evalsvc.scoring import ResultCache
from evalsvc.settings import Settings
from evalsvc.store import Run, RunItem, Store
from tests.bulk.conftest import item_states, write_jsonl
from tests.judges.openai_server import Failure, Reply, ScriptedOpenAI, judge_like, serving

pytestmark = pytest.mark.integration
ROWS = 6


@pytest.fixture
def server() -> Iterator[ScriptedOpenAI]:
    scripted = ScriptedOpenAI()
    with serving(scripted) as base_url:
        scripted.base_url = base_url  # type: ignore[attr-defined]
        yield scripted


@pytest.fixture
def llm_env(
    monkeypatch: pytest.MonkeyPatch,
    bulk_settings: Settings,
    tiny_paths: TinyModelPaths,
    server: ScriptedOpenAI,
) -> Settings:
    """The CLI's environment: the tiny EmpathyEval model, tiny Whisper and classifier, the loopback LLM."""
    env = {
        "MODEL": str(tiny_paths.model),
        "ADAPTER": str(tiny_paths.adapter),
        "HEADS": str(tiny_paths.heads),
        "MAX_NEW_TOKENS": "12",
        "DATA_DIR": str(bulk_settings.data_dir),
        "DATABASE_URL": bulk_settings.database_url or "",
        "BULK_BACKOFF_S": "0",
        "ASR_MODEL": "tiny",
        "ASR_MAX_NEW_TOKENS": "8",
        "EMOTION_MODEL": "tiny",
        "EMOTION_BACKEND": "transformers",
        "LLM_BASE_URL": server.base_url,  # type: ignore[attr-defined]
        "LLM_MODEL": "judge-model",
        "LLM_MAX_RETRIES": "0",
        "LLM_PRICE_INPUT_PER_1M": "2.5",
        "LLM_PRICE_OUTPUT_PER_1M": "10",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"EVALSVC_{name}", value)
    return Settings()


@dataclass(frozen=True)
class LLMBulk:
    """What a test of the CLI needs: the loopback LLM, the store, the clips, the captured output."""

    server: ScriptedOpenAI
    store: Store
    pairs_dir: Path
    capsys: pytest.CaptureFixture[str]


@pytest.fixture
def bulk(
    llm_env: Settings,
    server: ScriptedOpenAI,
    store: Store,
    pairs_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> LLMBulk:
    return LLMBulk(server, store, pairs_dir, capsys)


def llm_manifest(pairs_dir: Path, name: str, **extra: Any) -> Path:
    """ROWS pairs of 3 systems on 2 queries, without emotion labels (the judges' labeller adds them)."""
    rows = [
        {
            "id": f"llm-{q}-{r}",
            "query_audio": f"q{q}.wav",
            "response_audio": f"r{r}.flac",
            "system": f"system-{r}",
            "dataset": "tones",
            **extra,
        }
        for q in range(2)
        for r in range(3)
    ]
    path = pairs_dir / f"{name}.jsonl"
    write_jsonl(path, rows)
    return path


def runs_of(store: Store) -> list[Run]:
    with store.session() as session:
        return list(session.scalars(select(Run).order_by(Run.id)))


def rate_limit_storm(server: ScriptedOpenAI) -> dict[str, bool]:
    """Make every LLM call answer 429 until the returned switch's "on" is set to False."""
    storm = {"on": True}

    def script(body: dict[str, Any], number: int) -> Reply | Failure:
        return Failure(429, "slow down") if storm["on"] else judge_like(body, number)

    server.script = script
    return storm


def test_a_manifest_judged_by_three_judges_is_a_group_table5_reads_and_a_rerun_calls_nothing(
    bulk: LLMBulk,
) -> None:
    server, store, pairs_dir, capsys = bulk.server, bulk.store, bulk.pairs_dir, bulk.capsys
    manifest = llm_manifest(pairs_dir, "three", reference_audio="r4.flac")
    judges = "empathyeval,llm-ab,llm-mos+emotion"
    assert main(["bulk", "run", str(manifest), "--name", "t5", "--judge", judges, "--no-progress"]) == EXIT_OK
    summaries = json.loads(capsys.readouterr().out)
    assert [s["judge"] for s in summaries] == judges.split(",")
    assert all(s["status"] == "done" and s["done"] == ROWS for s in summaries)
    first = summaries[0]["id"]
    assert [s["group_id"] for s in summaries] == [first] * 3
    assert len(server.requests) == ROWS * 2 + ROWS  # A/B asks both orders, MOS once

    assert (
        main(["report", "leaderboard", "--run", str(summaries[2]["id"]), "--layout", "table5", "--json"]) == 0
    )
    table = json.loads(capsys.readouterr().out)
    assert table["runs"] == {s["judge"]: s["id"] for s in summaries}
    assert [row["system"] for row in table["rows"]] == ["system-0", "system-1", "system-2"]
    for row in table["rows"]:
        assert row["empathyeval"]["avg"]["n"] == 2 and row["empathyeval"]["avg"]["ci_low"] is not None
        assert row["llm"]["LLM"]["AB_Score"]["n"] == 2 and row["llm"]["LLM"]["flip_rate"]["n"] == 2
        assert row["llm"]["LLM+emotion"]["MOS"]["mean"] in (2.0, 3.5, 5.0)
        assert row["llm"]["LLM+emotion"]["AB_Score"]["n"] == 0  # no llm-ab+emotion run in the group
    assert main(["report", "leaderboard", "--run", str(first), "--layout", "table5"]) == 0
    assert "LLM+emotion MOS" in capsys.readouterr().out

    ab_run, mos_run = summaries[1]["id"], summaries[2]["id"]
    with store.session() as session:
        ab_verdicts = session.scalars(select(RunItem.verdict).where(RunItem.run_id == ab_run)).all()
    assert main(["report", "summary", str(ab_run), "--json"]) == EXIT_OK
    ab_summary = json.loads(capsys.readouterr().out)
    assert ab_summary["judge"] == "llm-ab" and ab_summary["overall"]["scored"] == ROWS
    assert ab_summary["overall"]["verdicts"]["AB_Score"]["mean"] == pytest.approx(sum(ab_verdicts) / ROWS)
    assert [group["verdicts"]["flip_rate"]["n"] for group in ab_summary["by_system"]] == [2, 2, 2]
    assert main(["report", "summary", str(mos_run)]) == EXIT_OK
    text = capsys.readouterr().out
    assert f"{ROWS} judged, 0 failed" in text and "MOS" in text
    assert main(["report", "export", str(ab_run), "--format", "csv"]) == EXIT_OK
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.endswith(",verdict,flipped") and len(lines) == ROWS

    with store.session() as session:
        emotions = session.scalars(select(RunItem.emotion).where(RunItem.run_id == summaries[2]["id"])).all()
    assert set(emotions) <= set(EMOTIONS) and None not in emotions  # the labeller's, for the breakdowns

    again = [
        "bulk",
        "run",
        str(manifest),
        "--name",
        "again",
        "--judge",
        "llm-ab,llm-mos+emotion",
        "--no-progress",
    ]
    assert main(again) == EXIT_OK
    rerun = json.loads(capsys.readouterr().out)
    assert all(s["done"] == ROWS for s in rerun)
    assert len(server.requests) == ROWS * 3  # every verdict came from the cache
    with store.session() as session:
        cached = session.scalars(select(RunItem.emotion).where(RunItem.run_id == rerun[1]["id"])).all()
    assert sorted(cached) == sorted(emotions)  # the stored labels, for cached verdicts too


def test_ab_without_a_reference_is_a_manifest_error_and_nothing_is_recorded(
    bulk: LLMBulk,
) -> None:
    server, store, pairs_dir, capsys = bulk.server, bulk.store, bulk.pairs_dir, bulk.capsys
    manifest = llm_manifest(pairs_dir, "noref")
    code = main(["bulk", "run", str(manifest), "--name", "x", "--judge", "llm-mos,llm-ab", "--no-progress"])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"{manifest}:1: the judge llm-ab needs reference_audio or reference_transcript" in err
    assert "manifest_invalid" in err and runs_of(store) == [] and server.requests == []
    text_only = llm_manifest(pairs_dir, "textref", reference_transcript="I am so sorry, that is hard.")
    code = main(["bulk", "run", str(text_only), "--name", "x", "--judge", "llm-ab+emotion", "--no-progress"])
    assert code == EXIT_USER_ERROR and "needs reference_audio" in capsys.readouterr().err


def test_dry_run_prints_calls_tokens_and_cost_and_records_nothing(
    bulk: LLMBulk,
) -> None:
    server, store, pairs_dir, capsys = bulk.server, bulk.store, bulk.pairs_dir, bulk.capsys
    manifest = llm_manifest(pairs_dir, "dry", reference_transcript="That sounds hard.")
    code = main(["bulk", "run", str(manifest), "--name", "d", "--judge", "llm-ab,llm-mos", "--dry-run"])
    assert code == EXIT_OK
    plan = json.loads(capsys.readouterr().out)
    assert [(row["judge"], row["calls"]) for row in plan["judges"]] == [
        ("llm-ab", 2 * ROWS),
        ("llm-mos", ROWS),
    ]
    assert plan["total"]["calls"] == 3 * ROWS and plan["total"]["cost_usd"] > 0
    assert runs_of(store) == [] and server.requests == []


def test_max_cost_stops_the_run_before_it_spends_and_resume_with_a_budget_finishes(
    bulk: LLMBulk,
) -> None:
    server, store, pairs_dir, capsys = bulk.server, bulk.store, bulk.pairs_dir, bulk.capsys
    manifest = llm_manifest(pairs_dir, "budget")
    code = main(["bulk", "run", str(manifest), "--name", "b", "--judge", "llm-mos", "--max-cost", "0.0001"])
    assert code == EXIT_USER_ERROR
    assert "llm_budget_exceeded" in capsys.readouterr().err and server.requests == []
    [run] = runs_of(store)
    assert item_states(store, run.id) == {"pending": ROWS}
    assert main(["bulk", "resume", str(run.id), "--inline", "--max-cost", "1"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["done"] == ROWS and len(server.requests) == ROWS


def test_a_429_storm_stops_the_run_with_nothing_failed_and_resume_finishes_it(
    bulk: LLMBulk,
) -> None:
    server, store, pairs_dir, capsys = bulk.server, bulk.store, bulk.pairs_dir, bulk.capsys
    storm = rate_limit_storm(server)
    manifest = llm_manifest(pairs_dir, "storm")
    code = main(["bulk", "run", str(manifest), "--name", "s", "--judge", "llm-mos", "--no-progress"])
    assert code == EXIT_CONFIG_ERROR and "llm_rate_limited" in capsys.readouterr().err
    [run] = runs_of(store)
    assert item_states(store, run.id) == {"pending": ROWS}  # transient: retried later, not failed
    storm["on"] = False
    assert main(["bulk", "resume", str(run.id), "--inline"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["done"] == ROWS


def test_a_group_stopped_by_an_outage_names_every_run_and_how_to_resume_each(
    bulk: LLMBulk,
) -> None:
    """The first run of a three-judge group stops on a 429 storm: the later runs are recorded but not
    scored, so every run id is printed up front and each unfinished run gets its resume line."""
    server, store, pairs_dir, capsys = bulk.server, bulk.store, bulk.pairs_dir, bulk.capsys
    storm = rate_limit_storm(server)
    manifest = llm_manifest(pairs_dir, "group-storm")
    judges = ["llm-mos", "llm-mos+emotion", "empathyeval"]
    code = main(["bulk", "run", str(manifest), "--name", "g", "--judge", ",".join(judges), "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG_ERROR and "llm_rate_limited" in err
    runs = [run.id for run in runs_of(store)]
    assert len(runs) == 3
    for run_id, judge in zip(runs, judges, strict=True):
        assert f"run {run_id} ({judge}): {ROWS} items recorded, scored in this process" in err
        assert f"  evalsvc bulk resume {run_id} --inline\n" in err
        assert item_states(store, run_id) == {"pending": ROWS}
    assert f"run {runs[0]} stopped: " in err and f"continue runs {runs[0]}, {runs[1]}, {runs[2]} with:" in err
    storm["on"] = False
    for run_id in runs:
        assert main(["bulk", "resume", str(run_id), "--inline"]) == EXIT_OK
        assert json.loads(capsys.readouterr().out)["done"] == ROWS


def test_an_unreadable_reply_fails_its_item_and_the_others_are_judged(
    bulk: LLMBulk,
) -> None:
    server, pairs_dir, capsys = bulk.server, bulk.pairs_dir, bulk.capsys

    def script(body: dict[str, Any], number: int) -> Reply:
        return Reply("I would say 4") if number % 3 == 0 else judge_like(body, number)

    server.script = script
    manifest = llm_manifest(pairs_dir, "garbled")
    assert main(["bulk", "run", str(manifest), "--name", "g", "--judge", "llm-mos", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] > 0 and summary["done"] + summary["failed"] == ROWS
    assert set(summary["errors"]) == {"llm_reply_unreadable"}


@pytest.fixture
def llm_worker(
    llm_env: Settings, redis_url: str, store: Store, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], bool]]:
    """An RQ worker of the bulk queue in this process, configured like `evalsvc worker` with the LLM."""
    monkeypatch.setenv("EVALSVC_REDIS_URL", redis_url)
    queue = f"llm-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("EVALSVC_BULK_QUEUE", queue)
    settings = Settings()
    jobs.install(
        ShardContext.from_settings(
            settings, store, LocalItemScorer(engine, ResultCache(store), AudioLimits())
        )
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run() -> bool:
        worker = ShardWorker(
            [queue],
            connection=Redis.from_url(redis_url),
            heartbeat_ttl_s=30,
            max_worker_deaths=settings.bulk_job_max_worker_deaths,
        )
        try:
            return worker.work(burst=True, with_scheduler=False)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    yield run
    jobs.install(None)


def test_a_submitted_llm_run_is_judged_by_a_worker(
    llm_worker: Callable[[], bool],
    server: ScriptedOpenAI,
    store: Store,
    pairs_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = llm_manifest(pairs_dir, "queued", reference_transcript="That must be hard.")
    assert main(["bulk", "submit", str(manifest), "--name", "q", "--judge", "llm-ab"]) == EXIT_OK
    [run_id] = [int(line) for line in capsys.readouterr().out.split()]
    llm_worker()
    assert item_states(store, run_id) == {"done": ROWS} and len(server.requests) == 2 * ROWS
