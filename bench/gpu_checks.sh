#!/usr/bin/env bash
# Every figure issue 11 asks of a GPU, in one run (about 10 minutes on one H100/H200-class GPU):
# scores-mode pairs/s at batch 1/4/16, MFU and peak memory (bench_gpu), the bf16 batch-invariance
# bound on the scaled-up model, loading time and host/GPU memory with and without a device map, and
# merged against unmerged LoRA, and (issue 17) in-process assessment throughput at batch 1/8/32 on the
# large size. Run from the repository root after `make install`; paste the output
# into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_checks: no CUDA device")'
$PY bench/bench_gpu.py --size large --dtype bfloat16
$PY bench/bench_invariance.py --device cuda --dtype bfloat16 --size large
$PY bench/bench_loading.py --device cuda --sizes tiny,large --rounds 2
$PY bench/bench_lora_merge.py --device cuda --rounds 2
$PY bench/bench_assessment.py --size large --device cuda --dtype bfloat16 --max-new-tokens 256
