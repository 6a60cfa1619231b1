"""Exports of runs' items joined with their results: CSV, JSON lines or Parquet, streamed.

Rows are read in batches through a streaming cursor (`yield_per`: a server-side cursor on
PostgreSQL) and written batch by batch, so a run of millions of items never sits in memory whole,
and an HTTP download starts with the first batch. Columns are `EXPORT_COLUMNS`; `meta` is a JSON
object in JSON lines and JSON text in CSV and Parquet. An item without a result has empty scores.
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

from evalsvc.store.report_queries import EXPORT_COLUMNS, export_rows
from evalsvc.store.scope import runs_for

ExportFormat = Literal["csv", "jsonl", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "parquet")
MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
BATCH_ROWS = 5_000
_INTEGERS = frozenset({"run_id", "result_id", "model_version_id"})
_FLOATS = frozenset({"NS", "WA", "EU", "ES", "avg"})
PARQUET_SCHEMA = pa.schema(
    [
        (name, pa.int64() if name in _INTEGERS else pa.float64() if name in _FLOATS else pa.string())
        for name in EXPORT_COLUMNS
    ]
)


def export_batches(
    session: Session,
    run_ids: Sequence[int],
    tenant_id: int | None,
    *,
    dataset: str | None = None,
    system: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[dict[str, Any]]]:
    """The rows of the runs (checked against the tenant first), `batch_rows` at a time."""
    runs_for(session, run_ids, tenant_id)
    query = export_rows(run_ids, dataset=dataset, system=system).execution_options(yield_per=batch_rows)
    for partition in session.execute(query).partitions():
        yield [_row(values) for values in partition]


def _row(values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(EXPORT_COLUMNS, values, strict=True))
    row["status"] = str(row["status"].value)
    return row


def encode_text(batches: Iterator[list[dict[str, Any]]], fmt: ExportFormat) -> Iterator[bytes]:
    """CSV (header first) or JSON lines, one chunk of bytes per batch."""
    if fmt == "csv":
        yield (",".join(EXPORT_COLUMNS) + "\n").encode()
    for batch in batches:
        if fmt == "jsonl":
            yield "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in batch).encode()
            continue
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows([_flat(row)[name] for name in EXPORT_COLUMNS] for row in batch)
        yield buffer.getvalue().encode()


def write_parquet(batches: Iterator[list[dict[str, Any]]], sink: IO[bytes]) -> int:
    """Write one Parquet file (one row group per batch); returns the number of rows."""
    rows = 0
    with pq.ParquetWriter(sink, PARQUET_SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(
                pa.RecordBatch.from_pylist([_flat(row) for row in batch], schema=PARQUET_SCHEMA)
            )
            rows += len(batch)
    return rows


def write_export(batches: Iterator[list[dict[str, Any]]], fmt: ExportFormat, sink: IO[bytes]) -> None:
    if fmt == "parquet":
        write_parquet(batches, sink)
        return
    for chunk in encode_text(batches, fmt):
        sink.write(chunk)


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `meta` as JSON text, for the tabular formats."""
    return row | {"meta": json.dumps(row["meta"], ensure_ascii=False)}
