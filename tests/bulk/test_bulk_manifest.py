"""Manifest validation: every problem of every row, with its line number, before anything is queued."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from evalsvc.bulk.manifest import ManifestItem, parse_manifest, read_manifest
from evalsvc.cli import main
from evalsvc.cli.common import EXIT_USER_ERROR
from evalsvc.errors import ManifestInvalid
from tests.helpers import EXAMPLES

EXAMPLE_MANIFEST = EXAMPLES / "pairs" / "manifest.jsonl"


def row(key: str, query: str = "q.wav", response: str = "r.wav", **extra: object) -> dict[str, object]:
    return {
        "id": key,
        "query_audio": query,
        "response_audio": response,
        "system": "s",
        "dataset": "d",
    } | extra


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(EXAMPLES / "query.wav", root / "q.wav")
    shutil.copy(EXAMPLES / "response.wav", root / "r.wav")
    (root / "notes.txt").write_text("not audio")
    return root


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(item if isinstance(item, str) else json.dumps(item) for item in rows) + "\n")
    return path


def test_the_example_manifest_is_valid_with_its_own_directory_as_root() -> None:
    manifest = read_manifest(EXAMPLE_MANIFEST, [EXAMPLE_MANIFEST.parent])
    assert manifest.problems == []
    assert len(manifest.items) == 8
    first = manifest.items[0]
    assert first.query_audio == (EXAMPLE_MANIFEST.parent / "pet_query.wav").resolve()
    spec = first.to_spec()
    assert (spec.item_key, spec.system, spec.dataset, spec.emotion) == (
        "pet-warm",
        "warm-bot",
        "examples",
        "sad",
    )


def test_every_bad_row_is_reported_with_its_line(audio_dir: Path) -> None:
    path = write(
        audio_dir / "manifest.jsonl",
        [
            row("ok"),                                               # 1
            row("ok"),                                               # 2 duplicate id
            {"id": "missing", "query_audio": "q.wav"},               # 3 missing fields
            row("gone", response="nowhere.wav"),                     # 4 missing file
            row("escape", query="../../etc/passwd.wav"),             # 5 outside the roots
            row("text", response="notes.txt"),                       # 6 unsupported extension
            "{not json",                                             # 7
            "",                                                      # 8 blank: skipped
            row("extra", transcript="hello"),                        # 9 unknown field
            row("meta", meta=["not", "an", "object"]),               # 10
            row("x" * 201),                                          # 11 id too long
            json.dumps([1, 2]),                                      # 12 not an object
            row("absolute", query=str(Path("/etc/hostname.wav"))),   # 13 absolute, outside
        ],
    )  # fmt: skip
    manifest = read_manifest(path, [audio_dir])
    lines = {problem.line for problem in manifest.problems}
    assert lines == {2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13}
    messages = {problem.line: problem.message for problem in manifest.problems}
    assert "duplicate id 'ok' (first on line 1)" in messages[2]
    assert "missing response_audio, system, dataset" in messages[3]
    assert "file not found" in messages[4]
    assert "outside the data roots" in messages[5]
    assert "unsupported extension '.txt'" in messages[6]
    assert "not valid JSON" in messages[7]
    assert "unknown field(s) 'transcript'" in messages[9]
    assert "meta must be a JSON object" in messages[10]
    assert "longer than 200" in messages[11]
    assert [item.id for item in manifest.items] == ["ok"]

    with pytest.raises(ManifestInvalid) as raised:
        manifest.accepted(skip_invalid=False)
    assert [line for line, _ in raised.value.problems] == sorted(lines)
    assert raised.value.to_dict()["problems"][0] == {"line": 2, "message": messages[2]}
    assert manifest.accepted(skip_invalid=True) == manifest.items


def test_a_symlink_out_of_the_root_is_refused(audio_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    shutil.copy(audio_dir / "q.wav", outside)
    (audio_dir / "link.wav").symlink_to(outside)
    manifest = parse_manifest(
        json.dumps(row("a", query="link.wav")).encode(), "jsonl", roots=[audio_dir], base_dir=audio_dir
    )
    assert [problem.message for problem in manifest.problems] == [
        "query_audio 'link.wav': outside the data roots"
    ]


def test_csv_with_meta_and_optional_columns(audio_dir: Path) -> None:
    text = (
        "id,query_audio,response_audio,system,dataset,response_emotion,meta\n"
        'a,q.wav,r.wav,sys,d,calm,"{""speaker"": ""s1""}"\n'
        "\n"
        "b,q.wav,r.wav,sys,d,,\n"
        'c,q.wav,r.wav,sys,d,,"{broken"\n'
        "d,q.wav\n"
    )
    manifest = parse_manifest(text.encode(), "csv", roots=[audio_dir], base_dir=audio_dir)
    assert [item.id for item in manifest.items] == ["a", "b"]
    assert manifest.items[0].to_spec().meta == {"speaker": "s1", "response_emotion": "calm"}
    assert manifest.items[1].meta == {}
    assert [(problem.line, problem.message.split(" (")[0]) for problem in manifest.problems] == [
        (5, "meta is not valid JSON"),
        (6, "2 cells, but the header has 7 columns"),
    ]


def test_an_uploaded_manifest_resolves_relative_paths_against_the_roots(audio_dir: Path) -> None:
    manifest = parse_manifest(json.dumps(row("a")).encode(), "jsonl", roots=[audio_dir])
    assert manifest.items == [
        ManifestItem(1, "a", (audio_dir / "q.wav").resolve(), (audio_dir / "r.wav").resolve(), "s", "d")
    ]
    unrooted = parse_manifest(json.dumps(row("a")).encode(), "jsonl", roots=[])
    assert "no data root is configured" in unrooted.problems[0].message


def test_empty_and_undecodable_manifests_are_refused(audio_dir: Path) -> None:
    with pytest.raises(ManifestInvalid, match="no rows"):
        parse_manifest(b"\n\n", "jsonl", roots=[audio_dir]).accepted(skip_invalid=True)
    with pytest.raises(ManifestInvalid, match="not UTF-8"):
        parse_manifest(b"\xff\xfe\x00", "jsonl", roots=[audio_dir])


def test_cli_rejects_an_invalid_manifest_naming_every_line_and_queues_nothing(
    audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(audio_dir / "bad.jsonl", [row("a"), row("b", query="missing.wav"), row("a"), "[]"])
    database = audio_dir / "db.sqlite3"
    code = main(["bulk", "submit", str(path), "--name", "bad", "--database-url", f"sqlite:///{database}"])
    captured = capsys.readouterr()
    assert code == EXIT_USER_ERROR
    assert captured.out == ""
    for line in (2, 3, 4):
        assert f"{path}:{line}:" in captured.err
    assert "error [manifest_invalid]: 3 of 4 row(s) of the manifest are invalid (3 problems)" in captured.err
    assert "nothing was queued" in captured.err
    assert not database.exists()  # rejected before the store was even opened


def test_rows_are_counted_apart_from_their_problems_with_hints(audio_dir: Path) -> None:
    rows = [row(f"r{index}", query="gone.wav", response="lost.wav") for index in range(40)]  # 2 each
    path = write(audio_dir / "two-each.jsonl", [*rows, row("ok"), row("typo", **{"query_emotions": "sad"})])
    manifest = read_manifest(path, [audio_dir])
    assert (manifest.rows, manifest.invalid_rows, len(manifest.problems)) == (42, 41, 81)
    with pytest.raises(
        ManifestInvalid, match=r"^41 of 42 row\(s\) of the manifest are invalid \(81 problems\)"
    ):
        manifest.accepted(skip_invalid=False)
    assert manifest.problems[-1].message == (
        "unknown field(s) 'query_emotions' (did you mean 'query_emotion'?) (put extra information in meta)"
    )


def test_a_misspelt_csv_header_is_reported_once(audio_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["id,query_audo,response_audio,system,dataset"] + [f"k{i},q.wav,r.wav,s,d" for i in range(40)]
    path = audio_dir / "misspelt.csv"
    path.write_text("\n".join(lines) + "\n")
    manifest = read_manifest(path, [audio_dir])
    assert [(problem.line, problem.message) for problem in manifest.problems] == [
        (1, "unknown column(s) 'query_audo' (did you mean 'query_audio'?) in the header "
            "(put extra information in the meta column)"),
        (1, "the header has no column query_audio"),
    ]  # fmt: skip
    assert manifest.items == [] and manifest.invalid_rows == 40
    code = main(["bulk", "run", str(path), "--name", "x", "--database-url", f"sqlite:///{audio_dir / 'db'}"])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert err.count("query_audo") == 1
    assert "40 of 40 row(s) of the manifest are invalid (2 problems)" in err


NUL = "\x00"


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("id", {"id": f"a{NUL}"}),
        ("system", {"system": NUL}),
        ("dataset", {"dataset": f"d{NUL}d"}),
        ("query_emotion", {"query_emotion": f"sad{NUL}"}),
        ("meta.speaker", {"meta": {"speaker": f"s{NUL}1"}}),
        ("meta.tags[1]", {"meta": {"tags": ["ok", NUL]}}),
        ("a key of meta", {"meta": {f"k{NUL}": 1}}),
    ],
)
def test_a_nul_character_anywhere_in_a_row_is_a_problem_of_its_line(
    audio_dir: Path, field: str, changes: dict[str, object]
) -> None:
    """PostgreSQL cannot store NUL in text or JSONB: refused here, not by a failing insert later."""
    rows = [row("ok"), row("a") | changes]
    jsonl = parse_manifest("\n".join(json.dumps(r) for r in rows).encode(), "jsonl", roots=[audio_dir])
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, ["id", "query_audio", "response_audio", "system", "dataset", "query_emotion", "meta"]
    )
    writer.writeheader()
    writer.writerows({**r, "meta": json.dumps(r.get("meta", {}))} for r in rows)
    from_csv = parse_manifest(buffer.getvalue().encode(), "csv", roots=[audio_dir], base_dir=audio_dir)
    for manifest, line in ((jsonl, 2), (from_csv, 3)):
        assert [item.id for item in manifest.items] == ["ok"]
        [problem] = manifest.problems
        assert problem.line == line and problem.message.startswith(f"{field} contains a NUL character")


def test_cli_refuses_nul_in_a_manifest_with_exit_2_and_no_traceback(
    audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(audio_dir / "nul.jsonl", [row("a", meta={"speaker": f"s{NUL}1"})])
    database = audio_dir / "db.sqlite3"
    code = main(["bulk", "submit", str(path), "--name", "nul", "--database-url", f"sqlite:///{database}"])
    captured = capsys.readouterr()
    assert code == EXIT_USER_ERROR
    assert f"{path}:1: meta.speaker contains a NUL character" in captured.err
    assert "Traceback" not in captured.err and not database.exists()


def test_cli_refuses_a_run_name_the_database_cannot_hold(audio_dir: Path) -> None:
    path = write(audio_dir / "m.jsonl", [row("a")])
    database = f"sqlite:///{audio_dir / 'db.sqlite3'}"
    with pytest.raises(SystemExit) as exit_:
        main(["bulk", "submit", str(path), "--name", "n" * 201, "--database-url", database])
    assert exit_.value.code == EXIT_USER_ERROR
