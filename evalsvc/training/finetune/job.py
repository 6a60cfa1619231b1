"""`train_adapter`: data checked -> stages planned -> model loaded -> trained -> adapter written.

    sources (files, judged runs)          ─▶ examples ─▶ train / validation ─▶ stages
                                                                           ─▶ StagedTrainer ─▶ OUT/

OUT receives what `--adapter OUT` loads (adapter_config.json, adapter_model.safetensors) and
training.json (which data, stages, settings, base model and prompts made it, with its loss curve).
Checkpoints live in OUT/checkpoints while training and are removed once the adapter is written.

training.json sits in the adapter directory, so it is part of the adapter's hash and with it of
every fingerprint: two adapters made by different data or settings never share cached scores. It
holds no clock times, so the same training on the CPU writes the same file.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evalsvc.audio import AudioLimits
from evalsvc.engine.adapter import LORA_ALPHA, LORA_RANK
from evalsvc.engine.fingerprint import package_versions
from evalsvc.errors import InvalidParameter, ResumeMismatch
from evalsvc.settings import Settings
from evalsvc.training.finetune.checkpoints import Checkpoint, CheckpointDir, Progress
from evalsvc.training.finetune.datafile import Example
from evalsvc.training.finetune.loop import StagedTrainer
from evalsvc.training.finetune.model import BaseCheckpoint, TrainableJudge, base_checkpoint, base_fingerprint
from evalsvc.training.finetune.plan import Stage, TrainConfig, digest, plan_stages, split_validation
from evalsvc.training.finetune.sources import ExampleSource, read_sources
from evalsvc.training.finetune.tasks import Task, prompt_versions

TRAINING_FILE = "training.json"
TRAINING_FORMAT = "evalsvc-adapter-training-v1"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINTS = "checkpoints"


@dataclass
class AdapterJob:
    sources: Sequence[ExampleSource]
    out_dir: Path
    validation_sources: Sequence[ExampleSource] = ()
    stages: Sequence[Task] = ()
    """Stage order; empty: the tasks the data has, in the paper's order (ser, caption, assessment)."""
    flat: bool = False
    config: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False
    progress_bar: bool = True


def train_adapter(settings: Settings, job: AdapterJob) -> dict[str, Any]:
    """Train the adapter `job` describes; returns a summary (also what the CLI prints).

    Raises `TrainingDataInvalid` before anything is loaded or written when a source has a problem,
    `ResumeMismatch` when `--resume` meets a checkpoint of another training, and
    `TrainingInterrupted` (a KeyboardInterrupt) after saving a checkpoint on Ctrl-C.
    """
    checkpoints = CheckpointDir(job.out_dir / CHECKPOINTS)
    resume_from = _check_out_dir(job, checkpoints)
    limits = AudioLimits.from_settings(settings)
    examples = read_sources(job.sources, limits)
    if job.validation_sources:
        train, validation = examples, read_sources(job.validation_sources, limits)
    else:
        train, validation = split_validation(examples, job.config.validation_fraction, job.config.seed)
    stages = plan_stages(job.stages, job.flat, {e.task for e in train})
    base = base_checkpoint(settings)
    record = _training_record(settings, job, base, stages, train, validation)
    plan_digest = digest(record)
    checkpoint = _checked_resume(checkpoints, resume_from, plan_digest)
    resumed_from = checkpoint.progress.step if checkpoint else None

    started = time.perf_counter()
    judge = TrainableJudge(
        settings, base, seed=job.config.seed, gradient_checkpointing=job.config.gradient_checkpointing
    )
    trainer = StagedTrainer(
        judge,
        stages,
        train,
        validation,
        job.config,
        checkpoints,
        plan_digest,
        limits,
        progress_bar=job.progress_bar,
    )
    progress = trainer.run(checkpoint)
    _write_adapter(judge, job.out_dir, record, progress)
    checkpoints.remove()
    return {
        "adapter": str(job.out_dir),
        "stages": progress.stages,
        "optimizer_steps": progress.step,
        "final_train_loss": progress.history[-1]["loss"] if progress.history else None,
        "resumed_from_step": resumed_from,
        "tokens_per_second": round(trainer.throughput.tokens_per_second, 1),
        "peak_memory_bytes": _peak_memory(judge.device),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _check_out_dir(job: AdapterJob, checkpoints: CheckpointDir) -> Path | None:
    """The checkpoint to resume, if any; refuses to overwrite a finished adapter or to start afresh
    over an unfinished training (which `--resume` continues)."""
    out = job.out_dir
    if (out / TRAINING_FILE).is_file():
        raise InvalidParameter(f"{out} already holds a trained adapter; choose another --out")
    latest = checkpoints.latest()
    if job.resume:
        if latest is None:
            raise InvalidParameter(f"nothing to resume: {out} has no checkpoint of a training")
        return latest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "an interrupted training (add --resume to continue it)" if latest else "files"
        raise InvalidParameter(f"{out} is not empty: it holds {what}; choose another --out")
    return None


def _checked_resume(checkpoints: CheckpointDir, path: Path | None, plan_digest: str) -> Checkpoint | None:
    if path is None:
        return None
    checkpoint = checkpoints.load(path)
    if checkpoint.digest != plan_digest:
        raise ResumeMismatch(
            f"the checkpoint in {path} belongs to a training with other data, stages, settings or base "
            "model; resume with the same command (and unchanged data files), or choose another --out"
        )
    return checkpoint


def _training_record(
    settings: Settings,
    job: AdapterJob,
    base: BaseCheckpoint,
    stages: Sequence[Stage],
    train: Sequence[Example],
    validation: Sequence[Example],
) -> dict[str, Any]:
    """Everything that decides the adapter, before training: training.json without its results."""
    fingerprint = base_fingerprint(base)
    counts: dict[str, dict[str, int]] = {}
    for split, examples in (("train", train), ("validation", validation)):
        for example in examples:
            counts.setdefault(example.task, {"train": 0, "validation": 0})[split] += 1
    return {
        "format": TRAINING_FORMAT,
        "base_model": {
            "model_id": fingerprint.model_id,
            "model_revision": fingerprint.model_revision,
            "weights_sha256": fingerprint.weights_sha256,
        },
        "adapter": {
            "r": LORA_RANK,
            "lora_alpha": LORA_ALPHA,
            "shape": "evalsvc.engine.adapter.lora_config_for",
        },
        "prompts": prompt_versions(),
        "data": {
            "sources": [source.describe() for source in job.sources],
            "validation_sources": [source.describe() for source in job.validation_sources],
            "validation": "given"
            if job.validation_sources
            else f"held out ({job.config.validation_fraction:g} per task)",
            "examples": counts,
            "validation_ids": sorted(e.id for e in validation),
        },
        "mode": "flat" if job.flat else "staged",
        "stages": [list(stage.tasks) for stage in stages],
        "settings": job.config.to_dict() | {"dtype": settings.dtype, "device": settings.device},
    }


def _write_adapter(judge: TrainableJudge, out: Path, record: dict[str, Any], progress: Progress) -> None:
    """The adapter files, then training.json last: its presence means the adapter is complete."""
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".adapter"
    judge.save_adapter(staging)
    for name in ADAPTER_FILES:
        os.replace(staging / name, out / name)
    training = record | {
        "results": {"stages": progress.stages, "optimizer_steps": progress.step},
        "loss_curve": progress.history,
        "validation_curve": progress.evaluations,
        "packages": package_versions(),
    }
    (staging / TRAINING_FILE).write_text(json.dumps(training, indent=1, ensure_ascii=False) + "\n")
    os.replace(staging / TRAINING_FILE, out / TRAINING_FILE)
    for leftover in staging.iterdir():
        leftover.unlink()
    staging.rmdir()


def _peak_memory(device: torch.device) -> int:
    """Peak GPU memory allocated by torch, or on the CPU the process's peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
