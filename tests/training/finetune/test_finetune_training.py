"""Training the adapter on the tiny model (CPU): it learns, it resumes exactly, it serves.

The resume tests compare whole runs: an uninterrupted reference, a run that dies without warning
(no save) and is resumed from its last periodic checkpoint, and a run stopped by Ctrl-C (SIGINT)
and resumed from the checkpoint it saved. All three must write the same loss curve and the same
adapter, down to its hash.
"""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from evalsvc.cli import main
from evalsvc.engine.artifacts import configured_fingerprint
from evalsvc.engine.engine import Engine
from evalsvc.engine.hashing import sha256_directory
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.errors import InvalidParameter, ResumeMismatch
from evalsvc.settings import Settings
from evalsvc.training.finetune import (
    AdapterJob,
    DataFileSource,
    TrainConfig,
    TrainingInterrupted,
    train_adapter,
)
from evalsvc.training.finetune.loop import StagedTrainer
from evalsvc.training.finetune.model import TrainableJudge, base_checkpoint
from evalsvc.training.finetune.tasks import TaskEncoder, collate
from tests.helpers import tone_pair
from tests.training.finetune.helpers import Dataset

# Two stages of 6 training examples (2 per task held out), 3 steps per epoch, 2 epochs each: 12 steps,
# checkpoints at 3, 4, 6, 8, 9, 12 (every 4 steps and at each epoch's end).
STAGED = TrainConfig(
    learning_rate=1e-2,
    epochs=2,
    batch_size=2,
    gradient_accumulation=1,
    warmup_ratio=0.0,
    patience=5,
    eval_every=2,
    checkpoint_every=4,
    validation_fraction=0.25,
)


def job(dataset: Dataset, out: Path, config: TrainConfig = STAGED, **changes: Any) -> AdapterJob:
    source = DataFileSource(dataset.directory / "all.jsonl", [dataset.directory])
    defaults: dict[str, Any] = {"stages": ["ser", "assessment"], "config": config, "progress_bar": False}
    return AdapterJob([source], out, **(defaults | changes))


def curve(out: Path) -> dict[str, Any]:
    training = json.loads((out / "training.json").read_text())
    return {"loss": training["loss_curve"], "validation": training["validation_curve"]}


@pytest.fixture(scope="module")
def reference(train_settings: Settings, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "adapter"
    train_adapter(train_settings, job(dataset, out))
    return out


def test_the_trainer_overfits_eight_examples(
    train_settings: Settings, dataset: Dataset, tmp_path: Path
) -> None:
    """Validation on the 8 training examples themselves: the loss must fall by more than half."""
    data = DataFileSource(dataset.file("judge.jsonl", "assessment"), [dataset.directory])
    config = TrainConfig(
        learning_rate=1e-2, epochs=6, batch_size=4, gradient_accumulation=1, warmup_ratio=0.0
    )
    summary = train_adapter(
        train_settings,
        AdapterJob(
            [data], tmp_path / "adapter", validation_sources=[data], config=config, progress_bar=False
        ),
    )
    (stage,) = summary["stages"]
    assert stage["train_examples"] == stage["validation_examples"] == 8
    assert stage["best_validation_loss"] < stage["initial_validation_loss"] / 2, stage


def test_stages_run_in_order_each_starting_from_the_last(reference: Path) -> None:
    training = json.loads((reference / "training.json").read_text())
    assert training["stages"] == [["ser"], ["assessment"]] and training["mode"] == "staged"
    assert [step["stage"] for step in training["loss_curve"]] == [0] * 6 + [1] * 6
    assert [step["step"] for step in training["loss_curve"]] == list(range(1, 13))
    ser, judge = training["results"]["stages"]
    assert (ser["tasks"], judge["tasks"]) == (["ser"], ["assessment"])
    assert ser["best_validation_loss"] < ser["initial_validation_loss"]
    assert judge["best_validation_loss"] < judge["initial_validation_loss"]
    assert training["data"]["examples"] == {
        "ser": {"train": 6, "validation": 2},
        "caption": {"train": 6, "validation": 2},
        "assessment": {"train": 6, "validation": 2},
    }


def test_a_stage_starts_from_the_previous_stages_adapter(
    train_settings: Settings, dataset: Dataset, reference: Path, tmp_path: Path
) -> None:
    """The assessment stage's first validation loss differs from that of a fresh adapter on the same
    examples (which is the base model's: a new LoRA adds nothing), so it began from stage 1's weights."""
    alone = train_adapter(
        train_settings, job(dataset, tmp_path / "alone", replace(STAGED, epochs=1), stages=["assessment"])
    )
    staged = json.loads((reference / "training.json").read_text())["results"]["stages"][1]
    assert alone["stages"][0]["validation_examples"] == staged["validation_examples"] == 2
    assert staged["initial_validation_loss"] != pytest.approx(
        alone["stages"][0]["initial_validation_loss"], rel=1e-3
    )


def test_a_crashed_training_resumes_from_its_checkpoint_with_the_same_loss_curve(
    train_settings: Settings,
    dataset: Dataset,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "adapter"
    original = StagedTrainer._step

    def power_cut(self: StagedTrainer, progress: Any, *args: Any) -> None:
        if progress.step == 5:
            raise RuntimeError("power cut")  # no handler runs: only the periodic checkpoint survives
        original(self, progress, *args)

    monkeypatch.setattr(StagedTrainer, "_step", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        train_adapter(train_settings, job(dataset, out))
    monkeypatch.setattr(StagedTrainer, "_step", original)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000004-stage0"]

    with pytest.raises(InvalidParameter, match="add --resume to continue it"):
        train_adapter(train_settings, job(dataset, out))
    summary = train_adapter(train_settings, job(dataset, out, resume=True))
    assert summary["resumed_from_step"] == 4
    assert curve(out) == curve(reference)
    assert sha256_directory(out) == sha256_directory(reference)  # weights, config and training.json
    assert not (out / "checkpoints").exists()


def test_ctrl_c_saves_the_last_step_and_resume_continues_it(
    train_settings: Settings,
    dataset: Dataset,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the command line: SIGINT in the middle of step 8 (of 12) keeps step 7, exit 130."""
    out = tmp_path / "adapter"
    original = StagedTrainer._step

    def interrupted(self: StagedTrainer, progress: Any, *args: Any) -> None:
        if progress.step == 7:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        original(self, progress, *args)

    monkeypatch.setattr(StagedTrainer, "_step", interrupted)
    data = str(dataset.directory / "all.jsonl")
    command = [
        "train", "adapter", "--data", data, "--out", str(out), "--model", train_settings.model,
        "--device", "cpu", "--data-dir", str(train_settings.data_dir), "--stage", "ser", "--stage", "assessment",
        "--learning-rate", "1e-2", "--epochs", "2", "--batch-size", "2", "--gradient-accumulation", "1",
        "--warmup-ratio", "0", "--patience", "5", "--eval-every", "2", "--checkpoint-every", "4",
        "--validation-fraction", "0.25",
    ]  # fmt: skip
    assert main(command) == 130
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000007-stage1"]
    err = capsys.readouterr().err
    assert "after step 7 is saved" in err
    # the progress bar: stage, step count, the last loss, tokens/s and the last validation loss
    assert "stage 1/2 ser" in err and "stage 2/2 assessment" in err
    assert all(f"{key}=" in err for key in ("loss", "tok/s", "val"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back

    monkeypatch.setattr(StagedTrainer, "_step", original)
    assert main([*command, "--resume", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed_from_step"] == 7 and summary["optimizer_steps"] == 12
    assert curve(out) == curve(reference)
    assert sha256_directory(out) == sha256_directory(reference)


def test_resume_refuses_other_data_or_settings(
    train_settings: Settings, dataset: Dataset, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    with pytest.raises(TrainingInterrupted):
        _interrupt_at_first_step(train_settings, job(dataset, out))
    with pytest.raises(ResumeMismatch, match="other data, stages, settings or base model"):
        train_adapter(train_settings, job(dataset, out, replace(STAGED, learning_rate=2e-2), resume=True))
    with pytest.raises(ResumeMismatch):
        train_adapter(train_settings, job(dataset, out, stages=["assessment"], resume=True))
    with pytest.raises(InvalidParameter, match="nothing to resume"):
        train_adapter(train_settings, job(dataset, tmp_path / "other", resume=True))


def _interrupt_at_first_step(settings: Settings, adapter_job: AdapterJob) -> None:
    original = StagedTrainer._step

    def stop(self: StagedTrainer, progress: Any, *args: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        original(self, progress, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StagedTrainer, "_step", stop)
        train_adapter(settings, adapter_job)


def test_the_adapter_loads_strictly_and_makes_a_new_fingerprint(
    reference: Path, tiny_paths: TinyModelPaths, train_settings: Settings
) -> None:
    served = Settings(model=train_settings.model, adapter=reference, data_dir=train_settings.data_dir)
    base = served.model_copy(update={"adapter": None})
    tiny_adapter = served.model_copy(update={"adapter": tiny_paths.adapter})
    keys = {configured_fingerprint(s).key for s in (served, base, tiny_adapter)}
    assert len(keys) == 3
    engine = Engine.load(served)  # strict: every tensor of the file loads, every LoRA weight is filled
    assert engine.fingerprint.adapter_sha256 == sha256_directory(reference)
    pairs = [tone_pair(0.8, 1.2)]
    assert not torch.allclose(
        engine.pooled_features(pairs), Engine.load(base).pooled_features(pairs), atol=1e-4
    )
    tensors = load_file(str(reference / "adapter_model.safetensors"))
    assert any(".lora_B." in name and tensor.abs().sum() > 0 for name, tensor in tensors.items())


def test_a_flat_mix_trains_every_task_in_one_stage(
    train_settings: Settings, dataset: Dataset, tmp_path: Path
) -> None:
    summary = train_adapter(
        train_settings, job(dataset, tmp_path / "flat", replace(STAGED, epochs=1), stages=[], flat=True)
    )
    (stage,) = summary["stages"]
    assert stage["tasks"] == ["ser", "caption", "assessment"] and stage["train_examples"] == 18
    assert json.loads((tmp_path / "flat" / "training.json").read_text())["mode"] == "flat"


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(
    train_settings: Settings, dataset: Dataset
) -> None:
    base = base_checkpoint(train_settings)
    pair = tone_pair(0.7, 1.0)
    results = []
    for checkpointing in (True, False):
        judge = TrainableJudge(train_settings, base, seed=0, gradient_checkpointing=checkpointing)
        for name, parameter in judge.trainable.items():  # B is zero at init: give the LoRA some effect
            if ".lora_B." in name:
                torch.nn.init.normal_(parameter, std=0.05, generator=torch.Generator().manual_seed(len(name)))
        judge.train()
        assert judge.thinker.model.language_model.gradient_checkpointing is checkpointing
        encoded = TaskEncoder(judge.processor).encode(
            "assessment", [pair.query, pair.response], "Warm.\nSCORES: NS=4 WA=4 EU=4 ES=4"
        )
        loss, _ = judge.loss_sum(collate([encoded], judge.pad_token_id))
        loss.backward()
        results.append((loss.detach().item(), {n: p.grad.clone() for n, p in judge.trainable.items()}))
    (with_loss, with_grads), (without_loss, without_grads) = results
    assert with_loss == pytest.approx(without_loss, rel=1e-6)
    assert all(torch.allclose(with_grads[n], without_grads[n], atol=1e-6) for n in with_grads)
