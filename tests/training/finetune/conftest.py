"""Fixtures of the adapter-training tests: a data set of tones for every task, and a base model.

Tests here run torch on one thread: on a machine shared with other work (CI runners, the developers'
machines) two spinning OpenMP threads ran these trainings 5-7 times slower than one (43 s against
6 s for the same training, measured with the machine's other core busy).

`sharp_model` is the session's tiny model with its LM head scaled by 10. The tiny model's head is
drawn with std 0.02 on 64-dimensional, RMS-normalised hidden states, so the largest logit margin any
hidden state can give a token is about 1.3 nats: with the head frozen (LoRA does not touch it, as in
the paper) no adapter could take the loss of a ~400-token vocabulary much below 4.7, and "the
trainer overfits 8 examples" could not be shown. Scaled, the same architecture, loaded by the same
code, can fit them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from tests.training.finetune.helpers import Dataset, write_dataset


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def sharp_model(tiny_paths: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sharp") / "model"
    shutil.copytree(tiny_paths.model, directory)
    model = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(tiny_paths.model)
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def train_settings(sharp_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(model=str(sharp_model), device="cpu", data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return write_dataset(tmp_path_factory.mktemp("dataset"))
