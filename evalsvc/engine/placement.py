"""Where the model's weights go: the CPU, one GPU, or one replica spread over a set of GPUs.

The 30B-A3B thinker is 63.4 GB in bf16. It is loaded with a device map, so each tensor goes from the
checkpoint straight to its device (host memory never holds the whole model), and a replica may span
several GPUs (2 x 48 GB, 4 x 24 GB). The map is planned here, before anything is read, by accelerate
on a meta-device copy of the model: whole decoder layers (and the audio encoder) per GPU, balanced
across the set, within a weights budget per GPU that leaves the rest for activations and the KV
cache. A model that would not fit is refused before loading, naming what it needs; nothing is ever
offloaded to the CPU or disk, which would make every forward crawl.

`evalsvc serve` splits the machine's GPUs into disjoint sets of `gpus_per_replica` and runs
`workers_per_device` model workers per set (8 GPUs, 2 per replica: 4 sets). LitServe 0.2.19 accepts
only one device index per worker (`devices` must be an int or a list of ints; each worker's `setup`
gets `"cuda:K"`), so the server hands LitServe one index per set and each worker turns its `K` back
into the set's GPUs (`replica_device`).

This module imports torch and accelerate only inside the functions that need them: the HTTP front
end plans the GPU sets without loading torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evalsvc.errors import InvalidParameter, ModelLoadError

if TYPE_CHECKING:
    import torch

# Share of a GPU's memory the weights may use when no budget is set: the rest is left for the CUDA
# context, activations and the KV cache (~96 KiB per token for the 30B thinker).
DEFAULT_WEIGHTS_SHARE = 0.85
_UNITS = {"GiB": 2**30, "GB": 10**9, "MiB": 2**20, "MB": 10**6}
_GPU_SET = re.compile(r"^cuda:(\d+(?:,\d+)*)$")


@dataclass(frozen=True)
class Placement:
    """A device kind and, for CUDA, the GPUs one model may use (its first one takes the inputs)."""

    kind: str
    gpus: tuple[int, ...] = ()

    @property
    def input_device(self) -> str:
        return f"cuda:{self.gpus[0]}" if self.kind == "cuda" else self.kind


def parse_placement(device: str, cuda_available: bool) -> Placement:
    """Settings.device as a Placement; 'auto' is CUDA (GPU 0) when there is one."""
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device in ("cpu", "mps"):
        return Placement(device)
    if not cuda_available:
        raise InvalidParameter(f"device {device!r} was requested but CUDA is not available; use cpu or auto")
    if device == "cuda":
        return Placement("cuda", (0,))
    match = _GPU_SET.match(device)
    if match is None:
        raise InvalidParameter(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or cuda:N,M,...")
    gpus = tuple(int(index) for index in match[1].split(","))
    if len(set(gpus)) != len(gpus):
        raise InvalidParameter(f"device {device!r} names a GPU twice")
    return Placement("cuda", gpus)


def parse_memory(text: str) -> int:
    """'40GiB' -> bytes (GiB, GB, MiB, MB)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(GiB|GB|MiB|MB)", text.strip())
    if match is None:
        raise InvalidParameter(f"memory size {text!r} must look like 40GiB, 48GB or 512MiB")
    return int(float(match[1]) * _UNITS[match[2]])


def replica_gpu_sets(gpus: Sequence[int], gpus_per_replica: int) -> list[tuple[int, ...]]:
    """Disjoint sets of `gpus_per_replica` GPUs, in order; every GPU must belong to one."""
    if not gpus:
        raise InvalidParameter("no GPU to serve on")
    if len(gpus) % gpus_per_replica:
        raise InvalidParameter(
            f"{len(gpus)} GPUs ({', '.join(map(str, gpus))}) cannot be split into sets of "
            f"gpus_per_replica={gpus_per_replica}; use a divisor of {len(gpus)} or name the GPUs "
            "with --device cuda:N,M,..."
        )
    return [tuple(gpus[start : start + gpus_per_replica]) for start in range(0, len(gpus), gpus_per_replica)]


def replica_device(litserve_device: str, gpu_sets: Sequence[tuple[int, ...]]) -> str:
    """The Settings.device of the worker LitServe started with `litserve_device` ('cuda:K': set K)."""
    if not litserve_device.startswith("cuda:"):
        return "mps" if litserve_device.startswith("mps") else litserve_device
    gpus = gpu_sets[int(litserve_device.removeprefix("cuda:"))]
    return "cuda:" + ",".join(str(gpu) for gpu in gpus)


def plan_device_map(model: torch.nn.Module, budgets: dict[int, int], dtype: torch.dtype) -> dict[str, int]:
    """Module -> GPU for `model` (built on the meta device), balanced within `budgets` (bytes per GPU).

    Raises ModelLoadError when the weights do not fit the GPUs' budgets together.
    """
    import logging

    from accelerate.utils import compute_module_sizes, get_balanced_memory, infer_auto_device_map

    no_split = sorted(getattr(model, "_no_split_modules", None) or [])
    # accelerate warns about every GPU this process cannot see (planning for another machine, or a
    # test); the plan itself only needs the numbers.
    accelerate_logger = logging.getLogger("accelerate.utils.modeling")
    level = accelerate_logger.level
    accelerate_logger.setLevel(logging.ERROR)
    try:
        balanced = get_balanced_memory(
            model, max_memory=dict(budgets), no_split_module_classes=no_split, dtype=dtype
        )
        device_map = infer_auto_device_map(
            model, max_memory=balanced, no_split_module_classes=no_split, dtype=dtype
        )
    finally:
        accelerate_logger.setLevel(level)
    off_gpu = sorted(name for name, device in device_map.items() if not isinstance(device, int))
    if off_gpu:
        needed = compute_module_sizes(model, dtype=dtype)[""]
        raise ModelLoadError(
            f"the model's weights ({needed / 2**30:.1f} GiB in {str(dtype).removeprefix('torch.')}) do not fit "
            f"GPUs {', '.join(map(str, budgets))} within their weights budgets "
            f"({', '.join(f'{budget / 2**30:.1f} GiB' for budget in budgets.values())}); "
            f"{len(off_gpu)} modules would not fit ({', '.join(off_gpu[:3])}, ...). Spread the model over "
            "more GPUs (--device cuda:0,1,...), or raise EVALSVC_MAX_GPU_MEMORY"
        )
    return {name: int(device) for name, device in device_map.items()}
