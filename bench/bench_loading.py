"""Loading time and peak host memory, with and without a device map, on the tiny and a scaled-up thinker.

    python bench/bench_loading.py [--sizes tiny,large] [--rounds 3] [--device cpu|cuda] [--workdir DIR]

Two ways to load the same checkpoint, each in a fresh process per round (so each peak is its own),
rounds interleaved:

- `to(device)`: `from_pretrained(path, dtype=...)` then `.to(device)`: how evalsvc loaded before
  issue 11. The whole model is built in host memory first, then copied to the device.
- `device_map`: `evalsvc.engine.loader.load_thinker`, the path `Engine.load` takes now: a device map
  planned up front, every tensor read straight to its device, the vision tower dropped.

Reported per size and path: median load time; the peak of host memory the process allocated while
loading (RssAnon, sampled every 5 ms, above its level before loading, torch and transformers
imported); the peak RSS, which also counts the checkpoint's pages mapped from the file (reclaimable
page cache: safetensors are memory-mapped); and the model's size in its dtype. On a CPU the device
is host memory, so both paths end with the whole model there; the claim that host memory no longer
holds the model on its way to a GPU is measured with `--device cuda` (not run here: no GPU lent).
`large` is bench_gpu's scaled-up config (1.5 B parameters, the 30B model's per-token shape).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from time import perf_counter

import torch
from bench_gpu import LARGE

from evalsvc.engine.tiny import TINY, build_tiny_model

SIZES = {"tiny": TINY, "large": LARGE}
PATHS = ("to(device)", "device_map")


def resident_mib() -> tuple[float, float]:
    """(RssAnon, VmRSS) of this process in MiB: memory it allocated, and that plus the checkpoint pages
    it maps from the file (reclaimable page cache). Read from /proc: ru_maxrss would do for neither, as
    a child started by a process that built a large model inherits its high-water mark."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "VmRSS"):
                fields[name] = int(value.split()[0]) / 1024
    return fields["RssAnon"], fields["VmRSS"]


class PeakSampler:
    """The highest RssAnon and VmRSS seen while loading, sampled every 5 ms on a thread."""

    def __init__(self) -> None:
        self.anonymous, self.total = resident_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        anonymous, total = resident_mib()
        self.anonymous, self.total = max(self.anonymous, anonymous), max(self.total, total)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def load_once(path: str, model: Path, device: str, dtype: torch.dtype) -> dict[str, float]:
    """Runs in the child process: one load, timed, with the host memory it took."""
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    from evalsvc.engine.loader import load_thinker, resolve_attn_implementation
    from evalsvc.engine.placement import parse_placement

    placement = parse_placement(device, torch.cuda.is_available())
    anonymous_before, total_before = resident_mib()
    started = perf_counter()
    with PeakSampler() as sampler:
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
        "host_peak_mib": sampler.anonymous - anonymous_before,
        "rss_peak_mib": sampler.total - total_before,
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
    print(
        "| size | path | load s (median) | peak host memory allocated, MiB | peak RSS incl. mapped file, MiB | model MiB | peak GPU MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for size in args.sizes.split(","):
            model = build_tiny_model(Path(workdir) / size, seed=0, size=SIZES[size], dtype=dtype).model
            samples: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
            for round_ in range(args.rounds):
                for path in PATHS if round_ % 2 == 0 else PATHS[::-1]:  # neither always runs first
                    samples[path].append(measure(path, model, args.device, args.dtype))
            for path, runs in samples.items():
                gpu = runs[0]["gpu_peak_mib"]
                print(
                    f"| {size} | {path} | {statistics.median(r['seconds'] for r in runs):.2f} "
                    f"| {max(r['host_peak_mib'] for r in runs):,.0f} | {max(r['rss_peak_mib'] for r in runs):,.0f} "
                    f"| {runs[0]['model_mib']:,.1f} "
                    f"| {'-' if gpu is None else f'{gpu:,.0f}'} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
