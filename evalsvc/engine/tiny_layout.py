"""The folder layout of the tiny random judge, without torch.

Both sides need it: `evalsvc.engine.tiny` writes it (torch, transformers, peft) and
`evalsvc.engine.artifacts` reads it on the torch-free cache path, building the model only when the
folder is not complete. Owning it here keeps that dependency one way (artifacts -> tiny -> layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyModelPaths:
    """The layout `evalsvc tiny-model DIR` writes: model/, adapter/, heads/ and a completion marker."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def heads(self) -> Path:
        return self.root / "heads"

    def complete(self) -> bool:
        return (self.root / "BUILD_COMPLETE").is_file()
