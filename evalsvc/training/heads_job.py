"""Head fitting end to end: targets from the store, features from the frozen engine, heads on disk.

Targets are the human ratings of a label set, or the scores of a teacher run (the LLM judge's
four scores): distilling the teacher into heads on the judge's own hidden states.

    label set | teacher run (SQL) ──▶ run items (audio) ──▶ FeatureCache / Engine.pooled_features ──▶ fit_heads
                                                                         ──▶ heads.json, heads.safetensors, metrics.json

The engine is loaded only when some feature is not cached, so refitting with other hyperparameters
costs no model load at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalsvc.audio import AudioLimits
from evalsvc.engine.artifacts import configured_fingerprint
from evalsvc.engine.engine import Engine
from evalsvc.engine.heads import Pooling
from evalsvc.engine.types import AudioPair
from evalsvc.errors import InvalidParameter, ModelLoadError
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.item_streams import labeled_items, teacher_items
from evalsvc.training.features_cache import FeatureCache, collect_features
from evalsvc.training.heads_fit import MIN_ITEMS, FitConfig, fit_heads, save_fit


@dataclass(frozen=True)
class HeadsJob:
    """Exactly one of `label_set` (human ratings; `run_id` says which run's audio their keys name)
    and `teacher_run` (a run whose scores are the targets) gives the targets."""

    label_set: str | None
    out_dir: Path
    run_id: int | None = None
    pooling: Pooling = "mean"
    batch_size: int = 8
    fit: FitConfig = field(default_factory=FitConfig)
    teacher_run: int | None = None

    @property
    def targets(self) -> str:
        """How messages name where the targets come from."""
        return (
            f"label set {self.label_set!r}"
            if self.label_set is not None
            else f"teacher run {self.teacher_run}"
        )


def train_heads(settings: Settings, job: HeadsJob) -> dict[str, Any]:
    """Fit heads for the configured model and write them to `job.out_dir`; returns the summary."""
    if (job.label_set is None) == (job.teacher_run is None):
        raise InvalidParameter("give the targets: a label set or a teacher run, not both")
    with Store.from_settings(settings).session() as session:
        if job.teacher_run is not None:
            items, dropped = teacher_items(session, job.teacher_run)
        else:
            items, dropped = labeled_items(session, job.label_set, job.run_id)  # type: ignore[arg-type]
    _require_enough(len(items), job.targets, dropped)  # before hours of feature extraction
    extractor = _Extractor(settings, job.pooling)
    backbone = extractor.fingerprint.backbone
    cache = FeatureCache(settings.resolved_features_dir, backbone, job.pooling)
    limits = AudioLimits.from_settings(settings)
    features = collect_features(items, cache, extractor, limits, job.batch_size)
    _require_enough(len(features.items), job.targets, dropped | features.dropped)
    targets = np.array([item.targets for item in features.items], dtype=np.float32)
    result = fit_heads(features.matrix(), targets, job.fit, pooling=job.pooling, backbone=backbone)
    provenance = {
        "label_set": job.label_set,
        "run_id": job.run_id,
        "teacher_run": job.teacher_run,
        "backbone": backbone,
        "model": {  # what the features depend on; the heads of the loaded model do not matter
            key: value
            for key, value in extractor.fingerprint.to_dict().items()
            if key not in ("fingerprint", "heads_sha256", "decoding")
        },
        "pooling": job.pooling,
        "items": len(features.items),
        "dropped": dropped | features.dropped,
        "feature_cache": {"directory": str(cache.directory), "hits": features.cache_hits},
    }
    save_fit(result, job.out_dir, provenance)
    return {
        "heads": str(job.out_dir),
        "items": len(features.items),
        "dropped": provenance["dropped"],
        "feature_cache_hits": features.cache_hits,
        "validation": result.metrics["validation"],
        "baseline_mean_mse": result.metrics["baseline_mean_mse"],
        "best_epoch": result.metrics["best_epoch"],
    }


def _require_enough(count: int, targets: str, dropped: dict[str, int]) -> None:
    if count < MIN_ITEMS:
        raise InvalidParameter(
            f"{targets} gives {count} usable pairs (left out: {dropped}); "
            f"fitting heads needs at least {MIN_ITEMS}"
        )


class _Extractor:
    """Pooled features from an engine loaded on first use; its fingerprint is known from the files."""

    def __init__(self, settings: Settings, pooling: Pooling) -> None:
        # Features come from the backbone alone: configured heads (fitted on another adapter, say)
        # are neither needed nor checked.
        settings = settings.model_copy(update={"heads": None})
        self._settings = settings
        self._pooling = pooling
        self._engine: Engine | None = None
        self._expected: str | None = None
        try:
            self.fingerprint = configured_fingerprint(settings)
        except (OSError, ValueError):  # unreadable artefacts: the loader explains why, clearly
            self.fingerprint = self._load().fingerprint
        self._expected = self.fingerprint.backbone

    def __call__(self, pairs: Sequence[AudioPair]) -> np.ndarray:
        return self._load().pooled_features(pairs, self._pooling).numpy()

    def _load(self) -> Engine:
        if self._engine is None:
            self._engine = Engine.load(self._settings)
            if self._expected is not None and self._engine.fingerprint.backbone != self._expected:
                raise ModelLoadError(
                    "the loaded model is not the one its files describe (a hub checkpoint missing from "
                    "the local cache?); download it, or pass its local directory as --model"
                )
        return self._engine
