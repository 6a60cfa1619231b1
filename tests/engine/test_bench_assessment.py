"""bench/bench_assessment.py at the tiny size on the CPU: the prepared GPU run's steps work end to end."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from evalsvc.engine.tiny import TINY

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_assessment_benchmark_runs_on_the_tiny_size_on_cpu(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))  # it imports bench_gpu as a sibling script, as `python bench/...` does
    try:
        spec = importlib.util.spec_from_file_location("bench_assessment", BENCH / "bench_assessment.py")
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCH))
    rates = bench.run(TINY, "cpu", "float32", 4, 1, max_new_tokens=3, workdir=tmp_path, batch_sizes=(1, 4))
    assert set(rates) == {1, 4}
    for pairs_per_s, tokens_per_s in rates.values():
        assert pairs_per_s > 0 and 0 < tokens_per_s <= 3 * pairs_per_s * (1 + 1e-9)  # at most 3 a pair
