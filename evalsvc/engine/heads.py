"""The NS/WA/EU/ES regression heads on pooled last-layer hidden states.

Heads are only meaningful on the backbone they were fitted on (same weights, adapter and prompt), so
their config records that backbone fingerprint and loading them onto another is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from evalsvc.engine.hashing import HEADS_CONFIG_FILE, HEADS_WEIGHTS_FILE
from evalsvc.engine.types import DIMENSIONS, SCORE_MAX, SCORE_MIN
from evalsvc.errors import HeadsMismatchError, ModelLoadError

Pooling = Literal["mean", "last"]
WEIGHTS_FILE = HEADS_WEIGHTS_FILE
CONFIG_FILE = HEADS_CONFIG_FILE


@dataclass(frozen=True)
class HeadsConfig:
    hidden_size: int
    pooling: Pooling
    backbone: str
    dimensions: tuple[str, ...] = DIMENSIONS


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool [batch, seq, hidden] to [batch, hidden] in float32, ignoring padding positions.

    Padding never contributes (masked with `where`, so even a non-finite pad state cannot leak), which
    is what keeps a pair's scores independent of the other pairs in its batch.
    """
    hidden = hidden.float()
    # On a model spread over GPUs the last hidden state is on the last one, the inputs on the first.
    mask = attention_mask.to(hidden.device).bool().unsqueeze(-1)
    if pooling == "last":
        # Inputs are left-padded, so the final position is every row's last real token.
        return hidden[:, -1, :]
    summed = torch.where(mask, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1)


class ScoreHeads(nn.Module):
    """One linear regressor per dimension, squashed into the 1-5 scale with a sigmoid."""

    def __init__(self, config: HeadsConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.hidden_size, len(config.dimensions))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return SCORE_MIN + (SCORE_MAX - SCORE_MIN) * torch.sigmoid(self.linear(pooled.float()))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS_FILE))
        payload = asdict(self.config) | {"dimensions": list(self.config.dimensions)}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path, expected_backbone: str | None = None) -> ScoreHeads:
        """Load heads; with `expected_backbone`, refuse heads fitted on a different backbone."""
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise ModelLoadError(f"heads directory {directory} must contain {CONFIG_FILE} and {WEIGHTS_FILE}")
        try:
            raw = json.loads(config_path.read_text())
            config = HeadsConfig(
                hidden_size=int(raw["hidden_size"]),
                pooling=raw["pooling"],
                backbone=str(raw["backbone"]),
                dimensions=tuple(raw.get("dimensions", DIMENSIONS)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(f"{config_path} is not a valid heads config: {error}") from error
        if config.pooling not in ("mean", "last") or config.dimensions != DIMENSIONS:
            raise ModelLoadError(f"{config_path}: unsupported pooling or dimensions {config}")
        if expected_backbone is not None and config.backbone != expected_backbone:
            raise HeadsMismatchError(
                f"heads in {directory} were fitted on backbone {config.backbone[:12]}, but the loaded model, "
                f"adapter and prompt are backbone {expected_backbone[:12]}; refit the heads "
                "(evalsvc train heads) or load the model they were fitted on"
            )
        heads = cls(config)
        heads.load_state_dict(load_file(str(weights_path)))
        return heads.eval()
