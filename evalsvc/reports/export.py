"""Exports of runs' items joined with their results: CSV, JSON lines or Parquet, streamed.

Rows are read in batches through a streaming cursor (`yield_per`: a server-side cursor on
PostgreSQL) and written batch by batch, so a run of millions of items never sits in memory whole,
and an HTTP download starts with the first batch. Columns are `EXPORT_COLUMNS`, then `verdict` and
`flipped` when a run is judged by llm-mos or llm-ab (`export_columns`); `meta` is a JSON object in
JSON lines and JSON text in CSV and Parquet. An item without a result has empty scores.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from evalsvc.reports.summary import verdict_figures
from evalsvc.store.report_queries import EXPORT_COLUMNS, VERDICT_EXPORT_COLUMNS, export_rows, run_judges
from evalsvc.store.scope import runs_for

ExportFormat = Literal["csv", "jsonl", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "parquet")
MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
BATCH_ROWS = 5_000
_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(("run_id", "result_id", "model_version_id"), pa.int64()),
    **dict.fromkeys(("NS", "WA", "EU", "ES", "avg", "verdict"), pa.float64()),
    "flipped": pa.bool_(),
}


def parquet_schema(columns: Sequence[str]) -> pa.Schema:
    return pa.schema([(name, _TYPES.get(name, pa.string())) for name in columns])


def export_columns(session: Session, run_ids: Sequence[int]) -> tuple[str, ...]:
    """The columns of an export of the runs: the verdict columns only when one is a verdict judge's."""
    verdicts = any(verdict_figures(judge) for judge in run_judges(session, run_ids))
    return EXPORT_COLUMNS + (VERDICT_EXPORT_COLUMNS if verdicts else ())


def export_batches(
    session: Session,
    run_ids: Sequence[int],
    tenant_id: int | None,
    *,
    dataset: str | None = None,
    system: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[dict[str, Any]]]:
    """The rows of the runs (checked against the tenant first), `batch_rows` at a time, with the
    columns of `export_columns`."""
    runs_for(session, run_ids, tenant_id)
    columns = export_columns(session, run_ids)
    verdicts = len(columns) > len(EXPORT_COLUMNS)
    query = export_rows(run_ids, dataset=dataset, system=system, verdicts=verdicts)
    for partition in session.execute(query.execution_options(yield_per=batch_rows)).partitions():
        yield [_row(columns, values) for values in partition]


def _row(columns: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(columns, values, strict=True))
    row["status"] = str(row["status"].value)
    return row


def encode_text(
    batches: Iterator[list[dict[str, Any]]], fmt: ExportFormat, columns: Sequence[str] = EXPORT_COLUMNS
) -> Iterator[bytes]:
    """CSV (header first) or JSON lines, one chunk of bytes per batch."""
    if fmt == "csv":
        yield (",".join(columns) + "\n").encode()
    for batch in batches:
        if fmt == "jsonl":
            yield "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in batch).encode()
            continue
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows([_flat(row)[name] for name in columns] for row in batch)
        yield buffer.getvalue().encode()


def write_parquet(
    batches: Iterator[list[dict[str, Any]]], sink: IO[bytes], columns: Sequence[str] = EXPORT_COLUMNS
) -> int:
    """Write one Parquet file (one row group per batch); returns the number of rows."""
    rows = 0
    schema = parquet_schema(columns)
    with pq.ParquetWriter(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(pa.RecordBatch.from_pylist([_flat(row) for row in batch], schema=schema))
            rows += len(batch)
    return rows


def write_export(
    batches: Iterator[list[dict[str, Any]]],
    fmt: ExportFormat,
    sink: IO[bytes],
    columns: Sequence[str] = EXPORT_COLUMNS,
) -> None:
    if fmt == "parquet":
        write_parquet(batches, sink, columns)
        return
    for chunk in encode_text(batches, fmt, columns):
        sink.write(chunk)


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `meta` as JSON text, for the tabular formats."""
    return row | {"meta": json.dumps(row["meta"], ensure_ascii=False)}
