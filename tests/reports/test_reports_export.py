"""Exports (CSV, JSON lines, Parquet), plots, the HTML page and the `evalsvc report|labels` CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from matplotlib.image import imread

from evalsvc.cli import main
from evalsvc.errors import NotFound
from evalsvc.reports import (
    export_batches,
    labelled_scores,
    leaderboards,
    run_report_html,
    run_summary,
    write_export,
)
from evalsvc.reports.export import encode_text
from evalsvc.reports.plots import distributions_png, radar_png, scatter_png
from evalsvc.store import Store, create_tenant
from tests.reports.builders import Item, add_run, random_items

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Seeded:
    url: str
    tenant: int
    stranger: int
    run: int
    empty: int
    items: list[Item]


@pytest.fixture(scope="module")
def seeded(module_store: Store) -> Seeded:
    with module_store.session() as session:
        tenant, stranger = create_tenant(session, "team-a").id, create_tenant(session, "team-b").id
    items = random_items(np.random.default_rng(41), 120, prefix="exp")
    items[0] = Item("exp-<b>", "<script>x</script>", "esd", "sad", items[0].query, items[0].response,
                    scores=(4.0, 3.0, 2.0, 1.0), meta={"speaker": "s1", "note": "naïve, \"quoted\""})  # fmt: skip
    run = add_run(module_store, items, name="exported", tenant_id=tenant)
    empty = add_run(module_store, [], name="nothing", tenant_id=tenant)
    return Seeded(module_store.url.render_as_string(hide_password=False), tenant, stranger, run, empty, items)


def expected_rows(items: list[Item], run_id: int) -> dict[str, dict[str, object]]:
    return {
        item.key: {
            "run_id": run_id,
            "system": item.system,
            "status": item.status,
            "NS": None if item.scores is None else item.scores[0],
            "avg": item.avg,
            "error_code": item.error,
            "meta": item.meta,
        }
        for item in items
    }


def check_rows(rows: list[dict[str, object]], seeded: Seeded) -> None:
    expected = expected_rows(seeded.items, seeded.run)
    assert [row["item_key"] for row in rows] == [item.key for item in seeded.items]  # manifest order
    for row in rows:
        wanted = expected[str(row["item_key"])]
        assert {name: row[name] for name in wanted} == wanted
        assert (row["query_sha256"] is None) == (row["status"] != "done")


def test_jsonl_export_streams_every_item_with_its_result(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        batches = list(export_batches(session, [seeded.run], seeded.tenant, batch_rows=25))
        data = b"".join(encode_text(iter(batches), "jsonl"))
    assert [len(batch) for batch in batches] == [25, 25, 25, 25, 20]
    check_rows([json.loads(line) for line in data.decode().splitlines()], seeded)


def test_csv_and_parquet_exports_hold_the_same_rows(module_store: Store, seeded: Seeded) -> None:
    sinks = {fmt: io.BytesIO() for fmt in ("csv", "parquet")}
    with module_store.session() as session:
        for fmt, sink in sinks.items():
            write_export(export_batches(session, [seeded.run], None, batch_rows=50), fmt, sink)  # type: ignore[arg-type]
    parquet_rows = pq.read_table(io.BytesIO(sinks["parquet"].getvalue())).to_pylist()
    csv_rows = list(csv.DictReader(io.StringIO(sinks["csv"].getvalue().decode())))
    for row in parquet_rows:
        row["meta"] = json.loads(row["meta"])
    check_rows(parquet_rows, seeded)
    assert len(csv_rows) == len(parquet_rows)
    for text_row, typed in zip(csv_rows, parquet_rows, strict=True):
        assert text_row["item_key"] == typed["item_key"]
        assert (float(text_row["avg"]) if text_row["avg"] else None) == typed[
            "avg"
        ]  # floats round-trip exactly
        assert json.loads(text_row["meta"]) == typed["meta"]


def test_exports_are_filtered_and_tenant_scoped(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        rows = [
            row
            for batch in export_batches(session, [seeded.run], seeded.tenant, system="sys-a")
            for row in batch
        ]
        assert {row["system"] for row in rows} == {"sys-a"}
        assert len(rows) == sum(item.system == "sys-a" for item in seeded.items)
        assert list(export_batches(session, [seeded.empty], seeded.tenant)) == []
        with pytest.raises(NotFound):
            next(export_batches(session, [seeded.run], seeded.stranger))
    empty = io.BytesIO()
    with module_store.session() as session:
        write_export(export_batches(session, [seeded.empty], None), "parquet", empty)
    assert pq.read_table(io.BytesIO(empty.getvalue())).num_rows == 0


def test_plots_are_png_images(module_store: Store, seeded: Seeded) -> None:
    with module_store.session() as session:
        summary = run_summary(session, seeded.run, None)
        [board, *_] = leaderboards(session, None, run_ids=[seeded.run]).leaderboards
        empty = run_summary(session, seeded.empty, None)
    for image in (distributions_png(summary), radar_png(board), distributions_png(empty)):
        assert image.startswith(PNG_SIGNATURE)
        assert imread(io.BytesIO(image), format="png").shape[2] in (3, 4)


def test_the_html_page_is_self_contained_and_escaped(
    module_store: Store, seeded: Seeded, tmp_path: Path
) -> None:
    labels = tmp_path / "l.csv"
    labels.write_text("id,NS,WA,EU,ES\n" + "".join(f"{item.key},3,4,2,5\n" for item in seeded.items[:40]))
    imported = main(["labels", "import", str(labels), "--name", "html-set", "--tenant", "team-a", "--database-url", seeded.url])  # fmt: skip
    assert imported == 0
    with module_store.session() as session:
        page = run_report_html(session, seeded.run, seeded.tenant, labels="html-set")
        scatter = scatter_png(labelled_scores(session, seeded.run, "html-set", None))
    assert scatter.startswith(PNG_SIGNATURE)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 4  # distributions, a radar per dataset, the scatter
    assert all(base64.b64decode(image).startswith(PNG_SIGNATURE) for image in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loaded from elsewhere
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Agreement with human ratings" in page and "utt LCC" in page
    with module_store.session() as session:
        empty = run_report_html(session, seeded.empty, None)
    assert "0 items, 0 scored" in empty and "no scored items" in empty and "data:image/png" in empty


def test_the_report_cli(seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = ["--database-url", seeded.url]
    assert main(["report", "summary", str(seeded.run), *database]) == 0
    text = capsys.readouterr().out
    assert "By system" in text and "95% CI" in text and "sys-a" in text
    assert main(["report", "summary", str(seeded.run), "--json", *database]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["items"] == len(seeded.items)
    assert main(["report", "leaderboard", "--run", str(seeded.run), "--sort", "NS", *database]) == 0
    assert "Leaderboard: esd (sorted by NS)" in capsys.readouterr().out
    assert main(["report", "compare", "--run", str(seeded.run), "--system", "sys-a", "--system", "sys-b", "--resamples", "500", *database]) == 0  # fmt: skip
    assert "pairs by query" in capsys.readouterr().out
    assert main(["report", "export", str(seeded.run), "--format", "jsonl", *database]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(seeded.items)
    output = tmp_path / "out.parquet"
    assert (
        main(["report", "export", str(seeded.run), "--format", "parquet", "-o", str(output), *database]) == 0
    )
    assert pq.read_table(output).num_rows == len(seeded.items)
    assert main(["report", "html", str(seeded.run), "-o", str(tmp_path / "r.html"), *database]) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "plot", str(seeded.run), "-o", str(tmp_path / "png"), *database]) == 0
    assert sorted(path.name for path in (tmp_path / "png").iterdir()) == [
        "distributions.png", "radar-dailytalk.png", "radar-esd.png",
    ]  # fmt: skip
    capsys.readouterr()


def test_cli_errors_are_reported_with_their_codes(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database-url", seeded.url]
    assert main(["report", "summary", "999", *database]) == 2
    assert "error [not_found]" in capsys.readouterr().err
    assert main(["report", "summary", str(seeded.run), "--tenant", "team-b", *database]) == 2
    assert "error [not_found]: no run" in capsys.readouterr().err
    assert main(["report", "export", str(seeded.run), "--format", "parquet", *database]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("id,NS\na,9\n")
    assert main(["labels", "import", str(bad), "--name", "bad", *database]) == 2
    assert (
        "error [labels_invalid]: labels file bad.csv has 1 problem(s): line 2: NS must lie in 1-5"
        in capsys.readouterr().err
    )
    assert main(["report", "compare", "--run", str(seeded.run), *database]) == 2
    assert "error [invalid_parameter]" in capsys.readouterr().err
    plots = tmp_path / "new" / "plots"
    assert main(["report", "plot", str(seeded.run), "-o", str(plots), "--labels", "nope", *database]) == 2
    assert "error [not_found]: no label set 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # a failed plot leaves no empty folder


def test_the_labels_cli_lists_sets(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database-url", seeded.url]
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps({"id": seeded.items[1].key, "rater": "ann", "NS": 4}) + "\n")
    assert main(["labels", "import", str(path), "--name", "listed", "--tenant", "team-a", "--run", str(seeded.run), *database]) == 0  # fmt: skip
    imported = json.loads(capsys.readouterr().out)
    assert (imported["label_set"], imported["ratings"], imported["with_audio"]) == ("listed", 1, 1)
    assert main(["labels", "list", "--tenant", "team-a", *database]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "listed", "description": None, "ratings": 1, "items": 1} in listed
    assert main(["labels", "list", "--tenant", "team-b", *database]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["labels", "import", str(path), "--name", "listed", "--tenant", "team-a", *database]) == 2
    assert (
        "error [invalid_parameter]: label set 'listed' already exists: import under another --name "
        "(`evalsvc labels list` shows the names in use)"
    ) in capsys.readouterr().err
