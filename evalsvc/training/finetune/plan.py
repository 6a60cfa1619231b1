"""What a training does, decided before the model loads: settings, stages, the validation split, and
the order examples are seen in.

Everything random here is derived from the seed and the position (stage, epoch), never from a
generator's running state: an interrupted training resumed at step N sees exactly the batches the
uninterrupted one saw after step N, so their loss curves agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from evalsvc.errors import InvalidParameter
from evalsvc.training.finetune.datafile import Example
from evalsvc.training.finetune.tasks import TASKS, Task


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the paper's where it gives them (lr 1e-4; rank and
    alpha are the adapter's shape, `evalsvc.engine.adapter`), LLaMA-Factory's otherwise."""

    learning_rate: float = 1e-4
    epochs: int = 3
    """At most, per stage; early stopping may end a stage sooner."""
    batch_size: int = 1
    gradient_accumulation: int = 8
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    patience: int = 3
    """Evaluations without a better validation loss before a stage stops."""
    eval_every: int | None = None
    """Optimizer steps between evaluations; None: at the end of every epoch only."""
    checkpoint_every: int = 50
    """Optimizer steps between checkpoints (and one at every epoch's end)."""
    seed: int = 0
    gradient_checkpointing: bool = True
    validation_fraction: float = 0.1
    """Share of each task's examples held out, unless validation data is given."""

    def __post_init__(self) -> None:
        checks = {
            "learning_rate": self.learning_rate > 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "gradient_accumulation": self.gradient_accumulation >= 1,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_grad_norm": self.max_grad_norm > 0,
            "patience": self.patience >= 1,
            "eval_every": self.eval_every is None or self.eval_every >= 1,
            "checkpoint_every": self.checkpoint_every >= 1,
            "validation_fraction": 0 <= self.validation_fraction < 1,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise InvalidParameter(f"invalid training setting(s): {', '.join(wrong)} ({self.to_dict()})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stage:
    tasks: tuple[Task, ...]

    @property
    def name(self) -> str:
        return "+".join(self.tasks)


def plan_stages(requested: Sequence[Task], flat: bool, present: set[Task]) -> list[Stage]:
    """Stages in the order asked (`--stage ser --stage caption ...`), or the tasks the data has in the
    paper's order; `flat` makes them one stage that mixes them all (the paper's Sft_Flat)."""
    tasks = list(requested) or [task for task in TASKS if task in present]
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        raise InvalidParameter(f"stage(s) given twice: {', '.join(repeated)}")
    missing = [task for task in tasks if task not in present]
    if missing:
        raise InvalidParameter(
            f"no training examples of task(s) {', '.join(missing)}; the data has {', '.join(sorted(present)) or 'none'}"
        )
    if not tasks:
        raise InvalidParameter("no training examples")
    return [Stage(tuple(tasks))] if flat else [Stage((task,)) for task in tasks]


def split_validation(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, validation): per task, `fraction` of its examples (at least one when it has two or more
    and the fraction is not 0), drawn with the seed from examples sorted by id."""
    train: list[Example] = []
    validation: list[Example] = []
    for task in TASKS:
        of_task = sorted((e for e in examples if e.task == task), key=lambda e: e.id)
        held = (
            0
            if fraction == 0 or len(of_task) < 2
            else min(len(of_task) - 1, max(1, round(fraction * len(of_task))))
        )
        random.Random(f"{seed}:{task}").shuffle(of_task)
        validation += of_task[:held]
        train += of_task[held:]
    return train, validation


def epoch_order(count: int, seed: int, stage: int, epoch: int) -> list[int]:
    """The order of a stage's examples in one epoch: a permutation fixed by (seed, stage, epoch)."""
    digest = hashlib.sha256(f"{seed}/{stage}/{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randperm(count, generator=generator).tolist()


def windows(order: Sequence[int], config: TrainConfig) -> list[list[list[int]]]:
    """An epoch as optimizer steps, each a list of micro-batches (lists of example indices); the last
    step of an epoch may take fewer micro-batches."""
    batches = [list(order[i : i + config.batch_size]) for i in range(0, len(order), config.batch_size)]
    size = config.gradient_accumulation
    return [batches[i : i + size] for i in range(0, len(batches), size)]


def steps_per_epoch(count: int, config: TrainConfig) -> int:
    return math.ceil(math.ceil(count / config.batch_size) / config.gradient_accumulation)


def digest(payload: dict[str, Any]) -> str:
    """What identifies a training for `--resume`: data, stages, settings, base model, prompts."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
