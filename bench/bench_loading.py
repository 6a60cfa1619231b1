"""Loading time and peak host memory, with and without a device map, on the tiny and a scaled-up thinker.

    python bench/bench_loading.py [--sizes tiny,large] [--rounds 3] [--device cpu|cuda] [--workdir DIR]

Two ways to load the same checkpoint, each in a fresh process per round (so each peak is its own),
rounds interleaved:

- `to(device)`: `from_pretrained(path, dtype=...)` then `.to(device)`: how evalsvc loaded before
  issue 11. The whole model is built in host memory first, then copied to the device.
- `device_map`: `evalsvc.engine.loader.load_thinker`, the path `Engine.load` takes now: a device map
  planned up front, every tensor read straight to its device, the vision tower dropped.

Reported per size and path: median load time, peak host RSS of the process above its RSS before
loading (torch and transformers imported), and the model's size in its dtype. On a CPU the device
is host memory, so both paths end with the whole model there; the claim that host memory no longer
holds the model on its way to a GPU is measured with `--device cuda` (not run here: no GPU lent).
`large` is bench_gpu's scaled-up config (1.5 B parameters, the 30B model's per-token shape).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import torch
from bench_gpu import LARGE

from evalsvc.engine.tiny import TINY, build_tiny_model

SIZES = {"tiny": TINY, "large": LARGE}
PATHS = ("to(device)", "device_map")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def load_once(path: str, model: Path, device: str, dtype: torch.dtype) -> dict[str, float]:
    """Runs in the child process: one load, timed, with the host memory it took."""
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    from evalsvc.engine.loader import load_thinker, resolve_attn_implementation
    from evalsvc.engine.placement import parse_placement

    placement = parse_placement(device, torch.cuda.is_available())
    before = current_rss_mib()
    started = perf_counter()
    if path == "to(device)":
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(str(model), dtype=dtype)
        thinker.to(placement.input_device)
    else:
        thinker = load_thinker(
            str(model),
            None,
            placement,
            dtype,
            attn_implementation=resolve_attn_implementation("auto", placement),
            max_gpu_memory=None,
        )
    if placement.kind == "cuda":
        torch.cuda.synchronize()
    seconds = perf_counter() - started
    model_mib = sum(p.numel() * p.element_size() for p in thinker.parameters()) / 2**20
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if placement.kind == "cuda" else None
    return {
        "seconds": seconds,
        "host_peak_mib": peak_rss_mib() - before,
        "model_mib": model_mib,
        "gpu_peak_mib": gpu_peak,
    }


def measure(path: str, model: Path, device: str, dtype: str) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--child",
        path,
        "--model",
        str(model),
        "--device",
        device,
        "--dtype",
        dtype,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument(
        "--workdir", type=Path, help="where the random models are built (default: a temp dir)"
    )
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.child:
        print(json.dumps(load_once(args.child, args.model, args.device, dtype)))
        return 0

    print(f"device {args.device}, {args.dtype}, {args.rounds} rounds, one fresh process per load\n")
    print("| size | path | load s (median) | peak host RSS above start, MiB | model MiB | peak GPU MiB |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for size in args.sizes.split(","):
            model = build_tiny_model(Path(workdir) / size, seed=0, size=SIZES[size], dtype=dtype).model
            samples: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
            for _ in range(args.rounds):
                for path in PATHS:
                    samples[path].append(measure(path, model, args.device, args.dtype))
            for path, runs in samples.items():
                gpu = runs[0]["gpu_peak_mib"]
                print(
                    f"| {size} | {path} | {statistics.median(r['seconds'] for r in runs):.2f} "
                    f"| {max(r['host_peak_mib'] for r in runs):,.0f} | {runs[0]['model_mib']:,.1f} "
                    f"| {'-' if gpu is None else f'{gpu:,.0f}'} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
