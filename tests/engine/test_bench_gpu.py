"""bench/bench_gpu.py on the tiny size and the CPU: the GPU benchmark's steps run and its figures hold.

No GPU is lent to CI, so the script that measures throughput and MFU on a GPU is checked here at toy
size: it builds, loads and scores through the real engine end to end, and produces figures in range
(a utilisation above 1 would mean a grossly wrong FLOP count or matmul timing).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.tiny import TINY, build_thinker_config, build_tokenizer

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_gpu.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_gpu_benchmark_runs_on_the_tiny_size_on_cpu(tmp_path: Path) -> None:
    bench = load_bench()
    report = bench.run(TINY, torch.device("cpu"), torch.float32, pairs=16, rounds=1, workdir=tmp_path)

    assert set(report.pairs_per_s) == {1, 4, 16}
    assert all(rate > 0 for rate in report.pairs_per_s.values())
    assert report.flops_per_pair > 0 and report.parameters > 0
    assert report.peak_memory_gib is None  # only a CUDA device reports it
    for batch_size in report.pairs_per_s:
        assert 0 < report.mfu(batch_size) <= 1


def test_the_large_size_is_a_valid_thinker_that_fits_one_gpu() -> None:
    """Built on the meta device (no memory): the config is one transformers accepts, and its weights
    in bf16 leave most of an 80 GB card for activations."""
    bench = load_bench()
    config = build_thinker_config(build_tokenizer(), bench.LARGE)
    with torch.device("meta"):
        model = Qwen3OmniMoeThinkerForConditionalGeneration(config)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    assert 1e9 < parameters < 5e9
