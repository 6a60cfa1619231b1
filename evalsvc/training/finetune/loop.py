"""The training loop: stages in order, gradient accumulation, validation with early stopping,
checkpoints, and Ctrl-C.

A plain loop rather than transformers' `Trainer`, on purpose:
- resuming must continue the same loss curve. Here the data order is a function of (seed, stage,
  epoch) (`plan.epoch_order`), a checkpoint is taken only between optimizer steps, and it holds the
  LoRA weights, AdamW and schedule state and the generators: a resumed run computes bit for bit what
  the uninterrupted one did on the CPU. `Trainer` resumes by replaying its sampler and skipping
  batches, through accelerate, whose exactness with gradient accumulation and custom samplers is
  not something this project can pin;
- stages are separate fine-tunings that each start from the last one's best adapter, with early
  stopping that restores the best weights: in `Trainer` that is one `Trainer` per stage plus
  callbacks, and its resume would not know which stage it was in;
- the loss is computed on the answer positions only (`TrainableJudge.loss_sum`), normalised by the
  answer tokens of the whole accumulation window, so accumulating 8 steps of 1 is training with
  batches of 8.
Several GPUs (the paper's 8) are LLaMA-Factory's job (README: "8 GPUs: the same adapter with
LLaMA-Factory"); this loop is the one-GPU (or CPU) path.

Ctrl-C (SIGINT) sets a flag that is read between micro-batches: the step in progress is dropped, a
checkpoint of the last finished step is saved, and `TrainingInterrupted` is raised. A second Ctrl-C
stops at once, without saving.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.training.finetune.checkpoints import Checkpoint, CheckpointDir, Progress, restore_rng
from evalsvc.training.finetune.datafile import Example
from evalsvc.training.finetune.model import TrainableJudge
from evalsvc.training.finetune.plan import Stage, TrainConfig, epoch_order, steps_per_epoch, windows
from evalsvc.training.finetune.tasks import EncodedExample, TaskEncoder, collate


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the last finished step is saved in `checkpoint`; `--resume` continues from it."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted after step {step}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class Throughput:
    """Measured in this process (not saved: a resumed run measures its own)."""

    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class StagedTrainer:
    def __init__(
        self,
        judge: TrainableJudge,
        stages: Sequence[Stage],
        train: Sequence[Example],
        validation: Sequence[Example],
        config: TrainConfig,
        checkpoints: CheckpointDir,
        digest: str,
        limits: AudioLimits,
        *,
        progress_bar: bool = True,
    ) -> None:
        self.judge = judge
        self.encoder = TaskEncoder(judge.processor)
        self.stages = list(stages)
        self.train_sets = [[e for e in train if e.task in stage.tasks] for stage in self.stages]
        self.validation_sets = [[e for e in validation if e.task in stage.tasks] for stage in self.stages]
        self.config = config
        self.checkpoints = checkpoints
        self.digest = digest
        self.limits = limits
        self.progress_bar = progress_bar
        self.throughput = Throughput()
        self._label_tokens = {e.id: len(self.encoder.answer_ids(e.target)) for e in (*train, *validation)}
        self._stop = _InterruptFlag()

    def run(self, resume: Checkpoint | None = None) -> Progress:
        """Train every stage not finished yet; returns the final progress (losses, stage results)."""
        progress = Progress()
        optimizer_state = None
        best: dict[str, torch.Tensor] | None = None
        if resume is not None:
            progress, optimizer_state, best = resume.progress, resume.optimizer, resume.best
            self.judge.load_weights(resume.weights)
            restore_rng(resume.rng)
        with self._stop.installed():
            while progress.stage < len(self.stages):
                self._run_stage(progress, optimizer_state, best)
                optimizer_state, best = None, None  # what a checkpoint held was for its own stage
        return progress

    # --- one stage -------------------------------------------------------------------------------

    def _run_stage(
        self, progress: Progress, optimizer_state: dict | None, best: dict[str, torch.Tensor] | None
    ) -> None:
        index = progress.stage
        examples, validation = self.train_sets[index], self.validation_sets[index]
        per_epoch = steps_per_epoch(len(examples), self.config)
        total = per_epoch * self.config.epochs
        optimizer = torch.optim.AdamW(
            list(self.judge.trainable.values()), lr=self.config.learning_rate, weight_decay=0.0
        )
        schedule = get_cosine_schedule_with_warmup(
            optimizer, math.ceil(self.config.warmup_ratio * total), total
        )
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state["optimizer"])
            schedule.load_state_dict(optimizer_state["schedule"])
        state = _StageState(optimizer, schedule, best)
        if validation and not any(e["stage"] == index for e in progress.evaluations):
            self._evaluate(progress, state)  # the starting point: early stopping may keep it
            self._save(progress, state)
        bar = self._bar(index, total, progress.stage_step)
        try:
            while not progress.stage_done and progress.epoch < self.config.epochs:
                order = epoch_order(len(examples), self.config.seed, index, progress.epoch)
                steps = windows(order, self.config)
                for window in steps[progress.window :]:
                    self._step(progress, state, [[examples[i] for i in batch] for batch in window], bar)
                    epoch_end = progress.window == len(steps)
                    if epoch_end:
                        progress.epoch, progress.window = progress.epoch + 1, 0
                    due = self.config.eval_every and progress.stage_step % self.config.eval_every == 0
                    if validation and (epoch_end or due):
                        self._evaluate(progress, state)
                        bar.set_postfix(self._postfix(progress), refresh=False)
                    if epoch_end or progress.stage_done or progress.step % self.config.checkpoint_every == 0:
                        self._save(progress, state)
                    if progress.stage_done:
                        break
        finally:
            bar.close()
        self._finish_stage(progress, state, per_epoch)

    def _step(self, progress: Progress, state: _StageState, window: list[list[Example]], bar: tqdm) -> None:
        """One optimizer step over the micro-batches of `window`; the loss is averaged over all of
        their answer tokens, as one batch of them would be."""
        started = time.perf_counter()
        total_labels = sum(self._label_tokens[e.id] for batch in window for e in batch)
        self.judge.train()
        loss_total, tokens = 0.0, 0
        for examples in window:
            self._check_interrupt(progress, state)
            batch = collate([self._encode(e) for e in examples], self.judge.pad_token_id)
            loss, _ = self.judge.loss_sum(batch)
            (loss / total_labels).backward()
            loss_total += float(loss.detach())
            tokens += batch.tokens
        self._check_interrupt(progress, state)
        torch.nn.utils.clip_grad_norm_(list(self.judge.trainable.values()), self.config.max_grad_norm)
        rate = state.schedule.get_last_lr()[0]
        state.optimizer.step()
        state.schedule.step()
        state.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.stage_step += 1
        progress.window += 1
        loss = loss_total / total_labels
        progress.history.append(
            {
                "step": progress.step,
                "stage": progress.stage,
                "epoch": progress.epoch,
                "loss": loss,
                "tokens": tokens,
                "learning_rate": rate,
            }
        )
        elapsed = time.perf_counter() - started
        self.throughput.tokens += tokens
        self.throughput.seconds += elapsed
        state.last_rate = tokens / elapsed if elapsed else 0.0
        bar.set_postfix(self._postfix(progress, state), refresh=False)
        bar.update(1)

    @torch.no_grad()
    def _evaluate(self, progress: Progress, state: _StageState) -> None:
        """Validation loss (per answer token) of the stage's validation examples; a better one is kept
        as the stage's best weights, and `patience` evaluations without one end the stage."""
        examples = self.validation_sets[progress.stage]
        self.judge.eval()
        total, labels = 0.0, 0
        for start in range(0, len(examples), self.config.batch_size):
            batch = collate(
                [self._encode(e) for e in examples[start : start + self.config.batch_size]],
                self.judge.pad_token_id,
            )
            loss, count = self.judge.loss_sum(batch)
            total, labels = total + float(loss), labels + count
        loss = total / labels
        progress.evaluations.append({"step": progress.step, "stage": progress.stage, "loss": loss})
        if progress.best_loss is None or loss < progress.best_loss:
            progress.best_loss, progress.best_step, progress.bad_evaluations = loss, progress.step, 0
            state.best = self.judge.weights()
        else:
            progress.bad_evaluations += 1
            if progress.bad_evaluations >= self.config.patience:
                progress.stage_done = True

    def _finish_stage(self, progress: Progress, state: _StageState, per_epoch: int) -> None:
        """Keep the stage's best weights (the next stage starts from them) and record the stage."""
        index = progress.stage
        if state.best is not None:
            self.judge.load_weights(state.best)
        evaluations = [e["loss"] for e in progress.evaluations if e["stage"] == index]
        progress.stages.append(
            {
                "tasks": list(self.stages[index].tasks),
                "train_examples": len(self.train_sets[index]),
                "validation_examples": len(self.validation_sets[index]),
                "optimizer_steps": progress.stage_step,
                "steps_per_epoch": per_epoch,
                "epochs_started": math.ceil(progress.stage_step / per_epoch),
                "stopped_early": progress.stage_done,
                "initial_validation_loss": evaluations[0] if evaluations else None,
                "best_validation_loss": progress.best_loss,
                "best_step": progress.best_step,
            }
        )
        progress.stage += 1
        progress.epoch = progress.window = progress.stage_step = progress.bad_evaluations = 0
        progress.best_loss = progress.best_step = None
        progress.stage_done = False
        state.best = None
        self._save(progress, state, optimizer=False)

    # --- helpers ----------------------------------------------------------------------------------

    def _encode(self, example: Example) -> EncodedExample:
        clips = [decode_audio(path, self.limits) for path in example.clips]
        return self.encoder.encode(example.task, clips, example.target)

    def _save(self, progress: Progress, state: _StageState, *, optimizer: bool = True) -> Path:
        training = (
            {"optimizer": state.optimizer.state_dict(), "schedule": state.schedule.state_dict()}
            if optimizer
            else None
        )
        return self.checkpoints.save(progress, self.digest, self.judge.weights(), state.best, training)

    def _check_interrupt(self, progress: Progress, state: _StageState) -> None:
        if self._stop.requested:
            state.optimizer.zero_grad(set_to_none=True)
            raise TrainingInterrupted(progress.step, self._save(progress, state))

    def _bar(self, index: int, total: int, done: int) -> tqdm:
        stage = self.stages[index]
        return tqdm(
            total=total,
            initial=done,
            desc=f"stage {index + 1}/{len(self.stages)} {stage.name}",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not self.progress_bar,
        )

    @staticmethod
    def _postfix(progress: Progress, state: _StageState | None = None) -> dict[str, str]:
        shown: dict[str, str] = {}
        if progress.history:
            shown["loss"] = f"{progress.history[-1]['loss']:.4f}"
        if state is not None:
            shown["tok/s"] = f"{state.last_rate:.0f}"
        if progress.evaluations and progress.evaluations[-1]["stage"] == progress.stage:
            shown["val"] = f"{progress.evaluations[-1]['loss']:.4f}"
        return shown


@dataclass
class _StageState:
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    best: dict[str, torch.Tensor] | None
    last_rate: float = 0.0


class _InterruptFlag:
    """SIGINT sets `requested` (the loop stops at its next safe point); a second one interrupts."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers belong to the main thread; elsewhere Ctrl-C is the caller's
            return
        previous: Callable | int | None = signal.getsignal(signal.SIGINT)

        def request(_signum: int, _frame: FrameType | None) -> None:
            self.requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print(
                "\nstopping after this micro-batch to save a checkpoint (Ctrl-C again: stop now)",
                file=sys.stderr,
            )

        signal.signal(signal.SIGINT, request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
