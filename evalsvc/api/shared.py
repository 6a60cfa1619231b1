"""State that every process of one server shares: metrics, the in-flight count, the model's identity.

Created by the main process before LitServe spawns the model workers (which receive it pickled with
the `LitAPI`, hence the spawn context) and forks the API servers (which inherit it).
"""

from __future__ import annotations

import multiprocessing
import pickle
from dataclasses import dataclass, field
from typing import Any

from evalsvc.api.limits import InFlightSlots
from evalsvc.api.metrics import SharedMetrics
from evalsvc.engine.types import ModelFingerprint

_MODEL_INFO_BYTES = 64 * 1024


class ModelInfoSlot:
    """The loaded model's fingerprint, published by the model workers for the API servers.

    The API servers need it to compute cache keys (cache hits are answered without queueing for the
    model), but they never load the model, and the fingerprint hashes the model's files, which is a
    job for the process that loads them. It crosses as a pickle of the frozen `ModelFingerprint`.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._buffer = context.RawArray("c", _MODEL_INFO_BYTES)
        self._length = context.Value("i", 0)
        self._cached: ModelFingerprint | None = None

    def publish(self, fingerprint: ModelFingerprint) -> None:
        encoded = pickle.dumps(fingerprint)
        if len(encoded) > _MODEL_INFO_BYTES:
            raise ValueError(f"fingerprint of {len(encoded)} bytes does not fit the shared slot")
        with self._length.get_lock():
            self._buffer[: len(encoded)] = encoded
            self._length.value = len(encoded)

    def read(self) -> ModelFingerprint | None:
        """The fingerprint of the loaded model, or None before any worker has loaded it."""
        if self._cached is None:
            with self._length.get_lock():
                encoded = bytes(self._buffer[: self._length.value])
            if encoded:
                self._cached = pickle.loads(encoded)
        return self._cached

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_cached": None}


@dataclass
class SharedState:
    """`metrics` is set by `build_server` once every route exists (its labels are the route
    templates), still before LitServe pickles the `LitAPI` for the workers or forks the API servers."""

    max_in_flight: int
    max_in_flight_per_tenant: int
    model_info: ModelInfoSlot = field(default_factory=ModelInfoSlot)
    in_flight: InFlightSlots = field(init=False)
    metrics: SharedMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.in_flight = InFlightSlots(self.max_in_flight, self.max_in_flight_per_tenant)
