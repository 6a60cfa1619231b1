"""`evalsvc build` as a user runs it: no empty datasets, problems of a --texts file listed like a
manifest's, files readable by another user as open() would make them, nothing left by a failure."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.tiny import build_tokenizer
from evalsvc.store import Store
from tests.training.helpers import ASSESSMENT, Pair, add_scored_run, score_line

JUDGED = f"{ASSESSMENT}\n{score_line((4, 4, 4, 4))}"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(directory)
    return str(directory)


def cli(store: Store, run_id: int, *args: str) -> int:
    url = store.url.render_as_string(hide_password=False)
    return main(["build", *args, "--run", str(run_id), "--database-url", url])


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_manifest_without_transcripts_builds_nothing_and_says_what_to_supply(
    sqlite_store: Store, tokenizer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = add_scored_run(sqlite_store, [Pair(f"k{i}", f"q{i}", f"r{i}", (4,) * 4, JUDGED) for i in range(3)])
    out = tmp_path / "new" / "data"
    code = cli(sqlite_store, run, "interleaved", "--out", str(out), "--tokenizer", tokenizer)
    captured = capsys.readouterr()
    assert code == EXIT_USER_ERROR and captured.out == ""
    assert "error [nothing_to_build]: no rows for reempathy.jsonl" in captured.err
    assert "no_response_transcript (3): items without a response transcript; give" in captured.err
    assert "--texts FILE" in captured.err
    assert not (tmp_path / "new").exists()  # the directories it created are gone again
    # An existing dataset directory keeps what it had: nothing is registered.
    out.mkdir(parents=True)
    (out / "dataset_info.json").write_text('{"old": {"file_name": "old.jsonl"}}\n')
    assert (
        cli(sqlite_store, run, "interleaved", "--out", str(out), "--tokenizer", tokenizer) == EXIT_USER_ERROR
    )
    assert sorted(os.listdir(out)) == ["dataset_info.json"]
    assert json.loads((out / "dataset_info.json").read_text()) == {"old": {"file_name": "old.jsonl"}}


def test_texts_problems_are_listed_by_line_with_hints(
    sqlite_store: Store, tokenizer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = add_scored_run(sqlite_store, [Pair("k1", "q1", "r1", (4,) * 4, JUDGED)])
    texts = tmp_path / "texts.jsonl"
    texts.write_text(
        '{"id": "k1", "response_transcipt": "I am sorry."}\n'  # misspelt key
        '{"id": "k9", "response_transcript": "for no item"}\n'
    )
    common = ("--out", str(tmp_path / "out"), "--tokenizer", tokenizer, "--texts", str(texts))
    assert cli(sqlite_store, run, "interleaved", *common) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"{texts}:1: unknown key(s) 'response_transcipt' (did you mean 'response_transcript'?)" in err
    assert "error [texts_invalid]" in err
    texts.write_text(
        '{"id": "k1", "response_transcript": "I am sorry."}\n{"id": "k9", "response_transcript": "x"}\n'
    )
    assert cli(sqlite_store, run, "interleaved", *common) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"{texts}:2: id 'k9' matches no item of the runs" in err
    assert not (tmp_path / "out").exists()
    texts.write_text('{"id": "k1", "response_transcript": "I am sorry."}\n')
    assert cli(sqlite_store, run, "interleaved", *common) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["written"] == {"reempathy.jsonl": 1}


def test_judge_sft_without_score_lines_and_pairs_below_the_margin_fail(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = {"response_transcript": "fine", "query_transcript": "hello"}
    run = add_scored_run(
        sqlite_store,
        [
            Pair("a", "q", "ra", (3.2,) * 4, ASSESSMENT, meta),  # no SCORES line
            Pair("b", "q", "rb", (3.0,) * 4, ASSESSMENT, meta),
        ],
    )
    assert cli(sqlite_store, run, "sft", "--out", str(tmp_path / "sft")) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "no_score_line (2): assessments without a valid final `SCORES: NS=.. WA=.. EU=.. ES=..`" in err
    assert cli(sqlite_store, run, "pairs", "--out", str(tmp_path / "dpo")) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "no rows for dpo_pairs.jsonl" in err
    assert "below_margin (1): queries whose best and worst avg differ by less than --margin; lower" in err
    assert "(the largest difference found is 0.2)" in err
    assert not (tmp_path / "sft").exists() and not (tmp_path / "dpo").exists()
    assert cli(sqlite_store, run, "pairs", "--out", str(tmp_path / "dpo"), "--margin", "0.2") == EXIT_OK
    capsys.readouterr()


def test_pairs_fail_whole_when_the_trl_file_would_be_empty(
    sqlite_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = add_scored_run(
        sqlite_store,
        [
            Pair("a", "q", "ra", (5,) * 4, meta={"response_transcript": "good"}),
            Pair("b", "q", "rb", (1,) * 4, meta={"response_transcript": "bad"}),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    assert cli(sqlite_store, run, "pairs", "--out", str(out)) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "no rows for dpo_pairs.trl.jsonl" in err and "trl_no_query_text (1)" in err
    assert "--format llamafactory" in err
    assert os.listdir(out) == []  # neither file, nor a registration
    assert cli(sqlite_store, run, "pairs", "--out", str(out), "--format", "llamafactory") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["written"] == {"dpo_pairs.jsonl": 1}


def test_files_get_the_mode_open_would_give_them(
    sqlite_store: Store, tmp_path: Path, umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run = add_scored_run(sqlite_store, [Pair("a", "q", "r", (4,) * 4, JUDGED)])
    tmp_path = tmp_path / "out"
    assert cli(sqlite_store, run, "sft", "--out", str(tmp_path)) == EXIT_OK
    assert mode(tmp_path / "judge_sft.jsonl") == 0o644  # readable by a trainer running as another user
    assert mode(tmp_path / "dataset_info.json") == 0o644
    os.chmod(tmp_path / "dataset_info.json", 0o664)  # a shared directory's group-writable file
    os.umask(0o077)
    assert cli(sqlite_store, run, "sft", "--out", str(tmp_path), "--name", "again") == EXIT_OK
    assert mode(tmp_path / "dataset_info.json") == 0o664  # rewritten, it keeps its mode
    assert mode(tmp_path / "again.jsonl") == 0o600  # a new file follows the umask
    assert sorted(os.listdir(tmp_path)) == ["again.jsonl", "dataset_info.json", "judge_sft.jsonl"]
    capsys.readouterr()


def test_help_shows_the_chunk_size_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["build", "interleaved", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--response-chunk TOKENS tokens per response chunk (default: 15;" in text
    assert "--reflection-chunk TOKENS tokens per reflection chunk (default: 15)" in text
    assert "(default: append)" in text and "(default: <reflection>)" in text
