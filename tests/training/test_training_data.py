"""ReEmpathy / CoTBS / plain SFT data and judge SFT data, built from runs in a real database.

Every test runs on SQLite and on PostgreSQL (the store tests' fixtures; skipped without PostgreSQL,
failed in CI). Every row written is put through an emulation of LLaMA-Factory's sharegpt converter
(tests/training/helpers.py), and what the rows say is compared with what the test wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.prompt import SYSTEM_TEXT, reflection_text
from evalsvc.engine.tiny import build_tokenizer
from evalsvc.errors import InvalidParameter, NotFound, NothingToBuild, TextsInvalid
from evalsvc.store import Store
from evalsvc.store.judging import store_transcripts
from evalsvc.training.codec import TokenCodec
from evalsvc.training.datasets import (
    JUDGE_USER_TEXT,
    InterleaveOptions,
    build_interleaved,
    build_judge_sft,
)
from evalsvc.training.texts import TextSource
from tests.training.helpers import (
    ASSESSMENT,
    Pair,
    add_scored_run,
    llamafactory_convert,
    score_line,
    sha,
    transcript_meta,
)

SCORES = (4.0, 3.5, 4.5, 4.0)
JUDGED = f"{ASSESSMENT}\n{score_line(SCORES)}"
SORRY = (
    "I'm so sorry you are going through this. It makes sense that you feel worn out, and you are not alone."
)
UNICODE = "Je suis désolé 😢 — 你好, that sounds really hard; take all the time you need."
SPEECH = list(range(500, 560))
START, END = "<reflection>", "</reflection>"


def run_pairs() -> list[Pair]:
    return [
        Pair("a1", "q1", "r1", SCORES, JUDGED, transcript_meta(SORRY)),
        Pair("a2", "q2", "r2", SCORES, JUDGED),  # no transcript
        Pair("a3", "q3", "r3", SCORES, None, transcript_meta(SORRY)),  # scores only
        Pair("a4", "q4", "r4", None, None, transcript_meta(SORRY)),  # pending
        Pair("a5", "q1", "r1", SCORES, JUDGED, transcript_meta(SORRY)),  # a1's audio again
        Pair("a6", "q6", "r6", SCORES, JUDGED, transcript_meta(SORRY, response_speech_tokens=SPEECH)),
        Pair("a7", "q7", "r7", SCORES, JUDGED, {}),  # transcript in the side file
        Pair("a8", "q8", "r8", SCORES, JUDGED, transcript_meta(UNICODE)),
        Pair("a9", "q9", "r9", SCORES, ASSESSMENT, transcript_meta(SORRY)),  # no score line
    ]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(directory)
    return Path(directory)


@pytest.fixture
def run_id(store: Store) -> int:
    return add_scored_run(store, run_pairs())


@pytest.fixture
def texts_file(tmp_path: Path) -> Path:
    path = tmp_path / "texts.jsonl"
    rows = [{"id": "a7", "response_transcript": SORRY}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_dataset(directory: Path, name: str) -> list[dict[str, Any]]:
    """The rows of dataset `name`, each converted as LLaMA-Factory would (or the test fails)."""
    entry = json.loads((directory / "dataset_info.json").read_text())[name]
    rows = [json.loads(line) for line in (directory / entry["file_name"]).read_text().splitlines()]
    return [llamafactory_convert(row, entry) for row in rows]


def split_reflections(text: str) -> tuple[str, list[str]]:
    """(the text outside the markers, the marked parts in order)."""
    pattern = re.escape(START) + "(.*?)" + re.escape(END)
    return re.sub(pattern, "", text, flags=re.S), re.findall(pattern, text, flags=re.S)


def build(store: Store, run_id: int, tokenizer_dir: Path, out: Path, texts: Path | None, **options: Any):
    codec = TokenCodec.from_path(tokenizer_dir)
    with TextSource(texts) as source, store.session() as session:
        return build_interleaved(
            session,
            [run_id],
            codec=codec,
            texts=source,
            options=InterleaveOptions(**options),
            out_dir=out,
            name="reempathy",
        )


def test_reempathy_rows_interleave_response_and_reflection(
    store: Store, run_id: int, tokenizer_dir: Path, texts_file: Path, tmp_path: Path
) -> None:
    report = build(store, run_id, tokenizer_dir, tmp_path / "out", texts_file)
    assert report.written == {"reempathy.jsonl": 5}  # a1, a6, a7, a8, a9
    assert report.settings_file == "reempathy.llamafactory.yaml"
    assert dict(report.dropped) == {"no_assessment": 2, "no_response_transcript": 1, "duplicate": 1}
    rows = read_dataset(tmp_path / "out", "reempathy")
    assert len(rows) == 5
    for row in rows:
        assert row["prompt"] == [{"role": "user", "content": "<audio>"}]
        [audio] = row["audios"]
        assert (tmp_path / "out" / audio).resolve().parent == Path("/audio") and audio.startswith("..")
        [answer] = row["response"]
        response, reflections = split_reflections(answer["content"])
        assert "".join(reflections) == reflection_text(ASSESSMENT)
        assert len(reflections) > 1  # interleaved, not one block
        assert answer["content"].startswith(response[:5])  # the response comes first
        speech = [int(n) for n in re.findall(r"<\|audio_(\d+)\|>", response)]
        assert speech in ([], SPEECH)
        assert re.sub(r"<\|audio_\d+\|>", "", response) in (SORRY, UNICODE)
    assert sum(report.outcomes.values()) == 5


def test_baselines_take_the_same_items(
    store: Store, run_id: int, tokenizer_dir: Path, texts_file: Path, tmp_path: Path
) -> None:
    cotbs = build(store, run_id, tokenizer_dir, tmp_path / "cotbs", texts_file, variant="cotbs")
    plain = build(store, run_id, tokenizer_dir, tmp_path / "plain", texts_file, variant="plain")
    assert cotbs.written == plain.written == {"reempathy.jsonl": 5}
    for row in read_dataset(tmp_path / "cotbs", "reempathy"):
        text = row["response"][0]["content"]
        assert text.startswith(START + reflection_text(ASSESSMENT) + END)
        assert split_reflections(text)[1] == [reflection_text(ASSESSMENT)]
    for row in read_dataset(tmp_path / "plain", "reempathy"):
        assert START not in row["response"][0]["content"]


def test_the_drop_policy_counts_what_it_left_out(
    store: Store, run_id: int, tokenizer_dir: Path, texts_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(NothingToBuild) as raised:
        build(
            store, run_id, tokenizer_dir, tmp_path / "out", texts_file,
            policy="drop", response_chunk=5, reflection_chunk=10_000,
        )  # fmt: skip
    message = raised.value.message
    assert "chunk_counts_differ (5): response and reflection chunk counts differ" in message
    assert "use --policy append or stretch" in message and "no_assessment (2): items without" in message
    assert not (tmp_path / "out" / "reempathy.jsonl").exists()
    assert not (tmp_path / "out" / "dataset_info.json").exists()
    stretched = build(
        store, run_id, tokenizer_dir, tmp_path / "s", texts_file, policy="stretch", response_chunk=40
    )
    assert set(stretched.outcomes) <= {"stretched", "balanced"} and sum(stretched.outcomes.values()) == 5


def test_judge_sft_rows_use_the_judge_prompt(store: Store, run_id: int, tmp_path: Path) -> None:
    with store.session() as session:
        report = build_judge_sft(session, [run_id], out_dir=tmp_path, name="judge")
    assert report.written == {"judge.jsonl": 5}  # a1, a2, a6, a7, a8 (a5 duplicates a1)
    assert dict(report.dropped) == {"no_assessment": 2, "duplicate": 1, "no_score_line": 1}
    for row in read_dataset(tmp_path, "judge"):
        assert row["system"] == SYSTEM_TEXT
        assert row["prompt"] == [{"role": "user", "content": JUDGE_USER_TEXT}]
        assert row["response"] == [{"role": "assistant", "content": JUDGED}]
        query, response = ((tmp_path / audio).resolve() for audio in row["audios"])
        assert query.parent == response.parent == Path("/audio")
        assert query.name.startswith("q") and response.name.startswith("r")


def test_datasets_share_one_dataset_info(
    store: Store, run_id: int, tokenizer_dir: Path, tmp_path: Path
) -> None:
    build(store, run_id, tokenizer_dir, tmp_path, None)
    with store.session() as session:
        build_judge_sft(session, [run_id], out_dir=tmp_path, name="judge")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"reempathy", "judge"}
    assert info["judge"]["columns"] == {"messages": "messages", "audios": "audios"}
    assert info["judge"]["tags"]["system_tag"] == "system"


def test_bad_texts_are_errors_naming_item_and_line(store: Store, tmp_path: Path, tokenizer_dir: Path) -> None:
    bad_meta = add_scored_run(
        store, [Pair("b1", "q", "r", SCORES, JUDGED, {"response_speech_tokens": [1, -5]})]
    )
    with pytest.raises(InvalidParameter, match=r"item 'b1'.*response_speech_tokens"):
        build(store, bad_meta, tokenizer_dir, tmp_path, None)
    broken = tmp_path / "texts.jsonl"
    broken.write_text('{"id": "x", "response_transcript": "ok"}\nnot json\n')
    with pytest.raises(TextsInvalid, match="line 2: not valid JSON"):
        TextSource(broken).check_ids(["x"])
    broken.write_text('{"id": "x"}\n{"id": "x"}\n')
    with pytest.raises(TextsInvalid, match="appears twice"):
        TextSource(broken).check_ids(["x"])
    broken.write_text('{"id": "x", "response_transcript": 5}\n')
    with pytest.raises(TextsInvalid, match="line 1: id 'x': response_transcript must be a string"):
        TextSource(broken).check_ids(["x"])
    with pytest.raises(TextsInvalid, match="line 1: id 'x': response_transcript"):  # never used as is
        TextSource(broken).texts("x", {})
    with pytest.raises(NotFound, match="no run with id 999"):
        build(store, 999, tokenizer_dir, tmp_path, None)


def test_cli_prints_what_it_wrote_and_dropped(
    store: Store,
    run_id: int,
    tokenizer_dir: Path,
    texts_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = store.url.render_as_string(hide_password=False)
    common = ["--run", str(run_id), "--out", str(tmp_path), "--database-url", url]
    code = main(
        ["build", "interleaved", *common, "--tokenizer", str(tokenizer_dir), "--texts", str(texts_file)]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert payload["written"] == {"reempathy.jsonl": 5}
    assert payload["dropped"] == {"duplicate": 1, "no_assessment": 2, "no_response_transcript": 1}
    assert sum(payload["interleaving"].values()) == 5
    assert main(["build", "sft", *common]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["written"] == {"judge_sft.jsonl": 5}
    code = main(["build", "sft", "--run", "999", "--out", str(tmp_path), "--database-url", url])
    assert code == EXIT_USER_ERROR and "no run with id 999" in capsys.readouterr().err


def test_items_stream_through_a_server_side_cursor(store: Store, run_id: int) -> None:
    """On PostgreSQL the rows come through a server-side cursor (psycopg), never all at once."""
    from sqlalchemy import event

    from evalsvc.store.item_streams import stream_items

    cursors: list[str] = []

    def record(_conn: object, cursor: object, statement: str, *_args: object) -> None:
        if "FROM run_items LEFT OUTER JOIN results" in statement:
            cursors.append(type(cursor).__name__)

    event.listen(store.engine, "before_cursor_execute", record)
    with store.session() as session:
        keys = [item.item_key for item in stream_items(session, [run_id], batch=2)]
    assert keys == [pair.key for pair in run_pairs()]
    assert cursors == (["ServerCursor"] if store.url.get_backend_name() == "postgresql" else ["Cursor"])


def test_stored_transcripts_fill_what_meta_and_the_side_file_lack(
    store: Store,
    run_id: int,
    tokenizer_dir: Path,
    texts_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """a2 has neither a transcript in meta nor in the side file: the one an LLM judge stored for its
    response clip (Whisper's, by audio sha256) is read instead of dropping it."""
    asr = {"key": "a" * 64, "role": "asr", "model_id": "openai/whisper-large-v3"}
    with store.session() as session:
        store_transcripts(session, asr, {sha("r2"): (UNICODE, "fr"), sha("r1"): ("not this one", "en")})
    url = store.url.render_as_string(hide_password=False)
    common = ["--run", str(run_id), "--out", str(tmp_path / "out"), "--database-url", url]
    code = main(
        ["build", "interleaved", *common, "--tokenizer", str(tokenizer_dir), "--texts", str(texts_file)]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert payload["written"] == {"reempathy.jsonl": 6}  # a2 now too
    assert payload["dropped"] == {"duplicate": 1, "no_assessment": 2}
    responses = [row["response"][0]["content"] for row in read_dataset(tmp_path / "out", "reempathy")]
    assert sum(response.startswith(UNICODE[:10]) for response in responses) == 2  # a8 (meta) and a2
    assert not any("not this one" in response for response in responses)  # meta wins over the store
