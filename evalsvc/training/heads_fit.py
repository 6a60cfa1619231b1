"""Fit the NS/WA/EU/ES heads on frozen-backbone features, and measure them on held-out pairs.

The backbone (thinker + LoRA adapter) stays frozen: only the 4-output linear layer of `ScoreHeads`
is trained, with MSE on the 1-5 scale the heads output (sigmoid-scaled, so a prediction can never
leave the scale). Pairs are split 8:1 into train and validation by a seeded shuffle; training stops
when the validation MSE has not improved for `patience` epochs and the best epoch's weights are kept.

Features are standardised for training (hidden states of LLMs have a few huge dimensions, which
stall plain gradient descent) and the standardisation is then folded into the linear layer, so the
saved heads take raw pooled features exactly as the engine hands them over.

`metrics.json`, next to the heads, reports LCC (Pearson), SRCC (Spearman), KTAU (Kendall) and MSE per
dimension and overall (all four pooled) on the validation split, beside the MSE of predicting the
training mean: heads that do not beat that constant have learnt nothing. The validation split also
chose the stopping epoch, so its figures are slightly optimistic; evaluate on a separate label set
(`evalsvc reports`) for a clean estimate.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalsvc.engine.heads import HeadsConfig, Pooling, ScoreHeads
from evalsvc.engine.types import DIMENSIONS, SCORE_MAX, SCORE_MIN
from evalsvc.errors import InvalidParameter
from evalsvc.stats import agreement

METRICS_FILE = "metrics.json"
MIN_ITEMS = 10


@dataclass(frozen=True)
class FitConfig:
    validation_fraction: float = 1 / 9
    max_epochs: int = 500
    patience: int = 30
    learning_rate: float = 1e-2
    weight_decay: float = 1e-3
    batch_size: int = 256
    seed: int = 0


@dataclass(frozen=True)
class FitResult:
    heads: ScoreHeads
    metrics: dict[str, Any]


def split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a seeded shuffle, at least one item on each side."""
    if count < MIN_ITEMS:
        raise InvalidParameter(f"fitting heads needs at least {MIN_ITEMS} labelled pairs, got {count}")
    if not 0.0 < fraction < 1.0:
        raise InvalidParameter(f"the validation fraction must be between 0 and 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(count)
    held_out = min(count - 1, max(1, round(count * fraction)))
    return order[held_out:], order[:held_out]


def fit_heads(
    features: np.ndarray, targets: np.ndarray, config: FitConfig, *, pooling: Pooling, backbone: str
) -> FitResult:
    """Heads for `backbone` fitted on features [n, hidden] -> targets [n, 4] (1-5)."""
    train, validation = split(len(features), config.validation_fraction, config.seed)
    x = torch.from_numpy(features.astype(np.float32))
    y = torch.from_numpy(targets.astype(np.float32))
    mean, std = x[train].mean(dim=0), x[train].std(dim=0, correction=0).clamp(min=1e-6)
    model = ScoreHeads(HeadsConfig(hidden_size=features.shape[1], pooling=pooling, backbone=backbone))
    with torch.no_grad():  # start from predicting the training mean, not from random weights
        model.linear.weight.zero_()
        model.linear.bias.copy_(_logit_of(y[train].mean(dim=0)))
    best_epoch, epochs_run = _train(model, (x - mean) / std, y, train, validation, config)
    heads = _fold_standardisation(model, mean, std)
    with torch.no_grad():
        predicted = heads(x[validation]).numpy()
    baseline = np.broadcast_to(targets[train].mean(axis=0), predicted.shape)
    metrics = {
        "validation": agreement_by_dimension(predicted, targets[validation]),
        "baseline_mean_mse": mse_by_dimension(baseline, targets[validation]),
        "train_items": len(train),
        "validation_items": len(validation),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "config": asdict(config),
    }
    return FitResult(heads.eval(), metrics)


def _train(
    model: ScoreHeads,
    x: torch.Tensor,
    y: torch.Tensor,
    train: np.ndarray,
    validation: np.ndarray,
    config: FitConfig,
) -> tuple[int, int]:
    """AdamW on the MSE in minibatches; keeps the weights of the best validation epoch.
    Returns (best epoch, epochs run)."""
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    train_rows = torch.from_numpy(train)
    best_loss, best_state, best_epoch, epoch = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(config.batch_size):
            rows = train_rows[batch]
            optimiser.zero_grad()
            torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
            optimiser.step()
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(model(x[validation]), y[validation]).item()
        if loss < best_loss:
            best_loss, best_state, best_epoch = loss, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return best_epoch, epoch


def agreement_by_dimension(predicted: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
    """LCC, SRCC, KTAU and MSE per dimension and over all four pooled, defined as in the agreement
    report (`evalsvc.stats.agreement`: None where undefined, e.g. a constant column)."""
    columns = {name: (predicted[:, i], labels[:, i]) for i, name in enumerate(DIMENSIONS)}
    columns["overall"] = (predicted.reshape(-1), labels.reshape(-1))
    return {name: asdict(agreement(p, t)) for name, (p, t) in columns.items()}


def mse_by_dimension(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    errors = {
        name: float(np.mean((predicted[:, i] - labels[:, i]) ** 2)) for i, name in enumerate(DIMENSIONS)
    }
    return errors | {"overall": float(np.mean((predicted - labels) ** 2))}


def save_fit(result: FitResult, directory: Path, provenance: dict[str, Any]) -> None:
    """The heads (loadable by the engine) and metrics.json with where they came from."""
    result.heads.save(directory)
    payload = result.metrics | {"provenance": provenance}
    (directory / METRICS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _logit_of(scores: torch.Tensor) -> torch.Tensor:
    """The pre-sigmoid value at which the heads output `scores`: training starts at the mean."""
    unit = ((scores - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)).clamp(1e-4, 1 - 1e-4)
    return torch.log(unit / (1 - unit))


def _fold_standardisation(model: ScoreHeads, mean: torch.Tensor, std: torch.Tensor) -> ScoreHeads:
    """W((x - mean) / std) + b  ==  (W / std) x + (b - W (mean / std)): the same heads on raw features."""
    heads = ScoreHeads(model.config)
    with torch.no_grad():  # in float64: a large mean / std ratio would lose the bias to rounding
        weight = model.linear.weight.double() / std.double()
        heads.linear.weight.copy_(weight)
        heads.linear.bias.copy_(model.linear.bias.double() - weight @ mean.double())
    return heads
