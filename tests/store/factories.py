"""Realistic store rows without model files: fingerprints and results by number."""

from __future__ import annotations

from dataclasses import replace

from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.store import ResultRecord, content_key


def make_fingerprint(**changes: object) -> ModelFingerprint:
    """A realistic fingerprint without any model files; `changes` override single fields."""
    base = ModelFingerprint(
        model_id="local:model",
        model_revision=None,
        weights_sha256="a" * 64,
        adapter_sha256="b" * 64,
        heads_sha256="c" * 64,
        prompt_version="empathyeval-v1",
        decoding=Decoding(),
        packages={"evalsvc": "0.1.0"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def make_record(index: int, fingerprint_key: str, mode: str = "scores") -> ResultRecord:
    """A distinct stored result for pair number `index`."""
    query, response = f"{index:064x}", f"{index + 1_000_000:064x}"
    value = 1.0 + (index % 400) / 100
    return ResultRecord(
        content_key=content_key(query, response, fingerprint_key, mode),
        query_sha256=query,
        response_sha256=response,
        mode=mode,
        ns=value,
        wa=value,
        eu=value,
        es=value,
        avg=value,
        latency_ms=12.5,
        query_duration_s=2.0,
        response_duration_s=3.0,
    )
