"""A run's results, one row per manifest item, as JSON lines or CSV, page by page.

Pages are keyed by the item id (`after`): unlike an offset, the cursor stays right while workers are
still finishing items, and each page is one indexed range scan however deep into the run it is.
The JSON line is the full row; CSV flattens it to fixed columns for spreadsheets and pandas.
Read for a tenant (HTTP), `result_id` is the tenant's own number for the result, as everywhere the
API answers; the local CLI sees the database's result ids.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

from evalsvc.store import Result, RunItem, Store, tenant_result_numbers
from evalsvc.store.run_records import result_page
from evalsvc.store.scope import get_run

ResultFormat = Literal["jsonl", "csv"]
MEDIA_TYPES: dict[ResultFormat, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
# The names `evalsvc report export` uses for the same things (item_key, emotion).
CSV_COLUMNS = (
    "item_key", "status", "system", "dataset", "emotion", "result_id",
    "NS", "WA", "EU", "ES", "avg", "assessment", "error_code", "error_message", "verdict",
)  # fmt: skip
_SCORE_NAMES = ("NS", "WA", "EU", "ES", "avg")


@dataclass(frozen=True)
class ResultPage:
    rows: list[dict[str, Any]]
    next_after: int | None
    """The cursor of the next page; None on the last page."""


def read_page(
    store: Store, run_id: int, *, after: int = 0, limit: int = 1000, tenant_id: int | None = None
) -> ResultPage:
    with store.session() as session:
        get_run(session, run_id, tenant_id=tenant_id)
        pairs = result_page(session, run_id, after=after, limit=limit + 1)
        more = len(pairs) > limit
        pairs = pairs[:limit]
        numbers: dict[int, int] | None = None
        if tenant_id is not None:
            linked = (item.result_id for item, _result in pairs if item.result_id is not None)
            numbers = tenant_result_numbers(session, tenant_id, linked)
        rows = [_row(item, result, numbers) for item, result in pairs]
        return ResultPage(rows, pairs[-1][0].id if more else None)


def encode_rows(rows: list[dict[str, Any]], fmt: ResultFormat, *, header: bool) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows([_csv_cells(row) for row in rows])
    return buffer.getvalue()


def _row(item: RunItem, result: Result | None, numbers: dict[int, int] | None) -> dict[str, Any]:
    scores = result.score_values() if result is not None else None
    error = None
    if result is not None and result.error_code is not None:
        error = {"code": result.error_code, "message": result.error_message or ""}
    elif item.last_error_code is not None and item.result_id is None:
        error = {"code": item.last_error_code, "message": item.last_error or ""}
    return {
        "item_key": item.item_key,
        "status": str(item.status.value),
        "system": item.system,
        "dataset": item.dataset,
        "emotion": item.emotion,
        "meta": item.meta,
        "result_id": item.result_id if numbers is None else numbers.get(item.result_id or 0),
        "scores": scores,
        "assessment": result.assessment if result is not None else None,
        "verdict": item.verdict,
        "error": error,
        "attempts": item.attempts,
    }


def _csv_cells(row: dict[str, Any]) -> list[Any]:
    scores = row["scores"] or {}
    error = row["error"] or {}
    return [
        row["item_key"], row["status"], row["system"], row["dataset"], row["emotion"], row["result_id"],
        *(scores.get(name) for name in _SCORE_NAMES),
        row["assessment"], error.get("code"), error.get("message"), row["verdict"],
    ]  # fmt: skip
