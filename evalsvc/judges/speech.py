"""What the transcriber and the emotion labeller share: where their model runs, and batching.

Both run beside the judge on the device EVALSVC_DEVICE names (the first GPU of a set), in the dtype
EVALSVC_DTYPE resolves to there: the engine's own rules (evalsvc.engine.placement, loader).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from evalsvc.engine.loader import resolve_dtype
from evalsvc.engine.placement import parse_placement
from evalsvc.settings import Settings

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def device_and_dtype(settings: Settings) -> tuple[str, torch.dtype]:
    placement = parse_placement(settings.device, torch.cuda.is_available())
    return placement.input_device, resolve_dtype(settings.dtype, placement)


def map_in_batches(
    function: Callable[[Sequence[ItemT]], list[ResultT]], items: Sequence[ItemT], size: int
) -> list[ResultT]:
    """`function` over consecutive slices of at most `size` items; results in input order."""
    found: list[ResultT] = []
    for start in range(0, len(items), size):
        found.extend(function(items[start : start + size]))
    return found
