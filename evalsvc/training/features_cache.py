"""Pooled features of labelled pairs, extracted once by the frozen backbone and kept on disk.

Fitting heads is seconds; the forward passes that produce their inputs are the cost (hours for a
30B model on thousands of pairs). So every feature vector is stored under

    ROOT/<backbone fingerprint>-<pooling>/<key[:2]>/<key>.npy     key = sha256(query sha256, response sha256)

and a refit (another split, learning rate, label set over the same audio) reads them back instead.
The backbone fingerprint covers weights, adapter and prompt, which is everything the hidden states
depend on; so a new adapter is a new directory, never a stale hit. Files are written aside and
renamed, so a crash never leaves a torn vector that a later fit would trust.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.engine.heads import Pooling
from evalsvc.engine.types import AudioPair
from evalsvc.errors import AudioError
from evalsvc.store.item_streams import LabeledItem

FeatureFn = Callable[[Sequence[AudioPair]], np.ndarray]


class FeatureCache:
    def __init__(self, root: Path, backbone: str, pooling: Pooling) -> None:
        self.directory = root / f"{backbone}-{pooling}"

    @staticmethod
    def key(query_sha256: str, response_sha256: str) -> str:
        return hashlib.sha256(f"{query_sha256}\n{response_sha256}".encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        return np.load(path) if path.is_file() else None

    def put(self, key: str, vector: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".", suffix=".npy", dir=path.parent)
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.ascontiguousarray(vector, dtype=np.float32))
        os.replace(staging, path)


@dataclass
class Features:
    """Feature rows (float32 [n, hidden]) with their items, and what could not be used."""

    items: list[LabeledItem] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0

    def matrix(self) -> np.ndarray:
        return np.stack(self.vectors).astype(np.float32)


def collect_features(
    items: Sequence[LabeledItem],
    cache: FeatureCache,
    extract: FeatureFn,
    limits: AudioLimits,
    batch_size: int,
) -> Features:
    """Features of every item: from the cache, or decoded and run through `extract` in batches.

    An item whose audio cannot be decoded is left out and counted by error code: one bad file
    should not stop a fit over thousands.
    """
    found = Features()
    pending: list[tuple[LabeledItem, AudioPair, str]] = []

    def flush() -> None:
        vectors = extract([pair for _, pair, _ in pending])
        for (item, _, key), vector in zip(pending, vectors, strict=True):
            cache.put(key, vector)
            found.items.append(item)
            found.vectors.append(vector)
        pending.clear()

    for item in items:
        try:
            pair = AudioPair(
                decode_audio(Path(item.query_ref), limits), decode_audio(Path(item.response_ref), limits)
            )
        except AudioError as error:
            found.dropped[error.code] = found.dropped.get(error.code, 0) + 1
            continue
        key = FeatureCache.key(pair.query.sha256, pair.response.sha256)
        cached = cache.get(key)
        if cached is not None:
            found.items.append(item)
            found.vectors.append(cached)
            found.cache_hits += 1
            continue
        pending.append((item, pair, key))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return found
