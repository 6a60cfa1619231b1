"""Checkpoints of an adapter training: everything needed to continue it as if it had not stopped.

    OUT/checkpoints/step-00000120/
        adapter.safetensors    the trainable (LoRA) weights, by parameter name
        best.safetensors       the stage's best weights so far (early stopping restores them)
        training.pt            AdamW and learning-rate schedule state of the current stage, and
                               torch's generator states (CPU and CUDA)
        state.json             position (stage, epoch, step), losses so far, the training's digest

A checkpoint is written in a hidden temporary directory and renamed into place, `state.json` last,
so a crash while saving leaves the previous checkpoint as it was; only the newest is kept. Resuming
takes the newest directory that has its state.json.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"
_PREFIX = "step-"


@dataclass
class Progress:
    """Where a training is, and what it has measured; saved as state.json."""

    stage: int = 0
    epoch: int = 0
    window: int = 0
    """Optimizer steps done in the current epoch."""
    step: int = 0
    """Optimizer steps done in all stages."""
    stage_step: int = 0
    """Optimizer steps done in the current stage (the learning-rate schedule's position)."""
    best_loss: float | None = None
    best_step: int | None = None
    bad_evaluations: int = 0
    stage_done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    """One entry per optimizer step: step, stage, epoch, loss, tokens, learning_rate."""
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    """One entry per validation pass: step, stage, loss."""
    stages: list[dict[str, Any]] = field(default_factory=list)
    """One entry per finished stage."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Checkpoint:
    progress: Progress
    digest: str
    weights: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any] | None
    rng: dict[str, Any]
    path: Path


class CheckpointDir:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def latest(self) -> Path | None:
        if not self.directory.is_dir():
            return None
        done = [p for p in self.directory.glob(f"{_PREFIX}*") if (p / STATE_FILE).is_file()]
        return max(done, key=lambda p: p.name, default=None)

    def save(
        self,
        progress: Progress,
        digest: str,
        weights: dict[str, torch.Tensor],
        best: dict[str, torch.Tensor] | None,
        optimizer: dict[str, Any] | None,
    ) -> Path:
        target = self.directory / f"{_PREFIX}{progress.step:08d}-stage{progress.stage}"
        if (target / STATE_FILE).is_file():
            return target  # this very position is saved already
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f".{target.name}-{secrets.token_hex(4)}"
        staging.mkdir()
        save_file(_cpu(weights), str(staging / "adapter.safetensors"))
        if best is not None:
            save_file(_cpu(best), str(staging / "best.safetensors"))
        torch.save({"optimizer": optimizer, "rng": _rng_state()}, staging / "training.pt")
        (staging / STATE_FILE).write_text(
            json.dumps({"digest": digest, "progress": progress.to_dict()}, indent=1)
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        for older in self.directory.iterdir():
            if older != target:
                shutil.rmtree(older, ignore_errors=True)
        return target

    def load(self, path: Path) -> Checkpoint:
        state = json.loads((path / STATE_FILE).read_text())
        best = path / "best.safetensors"
        rest = torch.load(path / "training.pt", map_location="cpu", weights_only=True)
        return Checkpoint(
            progress=Progress(**state["progress"]),
            digest=state["digest"],
            weights=load_file(str(path / "adapter.safetensors")),
            best=load_file(str(best)) if best.is_file() else None,
            optimizer=rest["optimizer"],
            rng=rest["rng"],
            path=path,
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_state() -> dict[str, Any]:
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
