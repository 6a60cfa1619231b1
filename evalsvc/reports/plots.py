"""Report plots as PNG bytes: score distributions, a radar chart of systems, judge-vs-human scatter.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg canvas, never through
`pyplot`: no display is needed, no global figure state is kept, and concurrent HTTP requests do not
share anything. Inputs are report objects already computed (histograms come from the SQL summary),
so a plot reads no data of its own except the scatter's vectors.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from evalsvc.reports.agreement import LabelledScores
from evalsvc.reports.queries import DIMENSIONS, SCORE_COLUMNS
from evalsvc.reports.schemas import Leaderboard, RunSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 100


def distributions_png(summary: RunSummary) -> bytes:
    """One bar chart per dimension (and avg): how many items fall in each half-point bin."""
    figure = _figure(figsize=(3.2 * len(SCORE_COLUMNS), 3.0), dpi=_DPI, layout="constrained")
    axes = figure.subplots(1, len(SCORE_COLUMNS), sharey=True)
    positions = np.arange(len(summary.histogram_bins))
    for axis, name in zip(axes, SCORE_COLUMNS, strict=True):
        stats = summary.overall.scores[name]
        axis.bar(positions, stats.histogram or [0] * len(positions), color="#4c72b0")
        axis.set_xticks(positions, summary.histogram_bins, rotation=60, fontsize=7)
        mean = "n/a" if stats.mean is None else f"{stats.mean:.2f}"
        axis.set_title(f"{name} (n={stats.n}, mean {mean})", fontsize=9)
    axes[0].set_ylabel("items")
    figure.suptitle(f"Score distributions: run {summary.run_id} ({summary.run_name})", fontsize=10)
    return _png(figure)


def radar_png(board: Leaderboard) -> bytes:
    """Each system's mean NS, WA, EU, ES on one polar chart (scale 1-5)."""
    angles = np.linspace(0, 2 * np.pi, len(DIMENSIONS), endpoint=False)
    closed = np.append(angles, angles[0])
    figure = _figure(figsize=(5.5, 5.0), dpi=_DPI, layout="constrained")
    axis = figure.add_subplot(projection="polar")
    for row in board.rows:
        means = [row.scores[name].mean for name in DIMENSIONS]
        if any(mean is None for mean in means):
            continue
        values = np.array(means, dtype=np.float64)
        axis.plot(closed, np.append(values, values[0]), linewidth=1.5, label=row.system or "(none)")
        axis.fill(closed, np.append(values, values[0]), alpha=0.1)
    axis.set_xticks(angles, list(DIMENSIONS))
    axis.set_ylim(1, 5)
    axis.set_title(f"Systems on {board.dataset or '(no dataset)'}", fontsize=10)
    if board.rows:
        axis.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
    return _png(figure)


def scatter_png(scores: LabelledScores) -> bytes:
    """Judge score against mean human rating, one panel per dimension, with the identity line."""
    figure = _figure(figsize=(3.2 * len(DIMENSIONS), 3.4), dpi=_DPI, layout="constrained")
    axes = figure.subplots(1, len(DIMENSIONS), sharex=True, sharey=True)
    for axis, name in zip(axes, DIMENSIONS, strict=True):
        model, human = scores.model[name], scores.human[name]
        both = ~(np.isnan(model) | np.isnan(human))
        axis.scatter(human[both], model[both], s=8, alpha=0.5, color="#dd8452")
        axis.plot([1, 5], [1, 5], color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlim(0.8, 5.2)
        axis.set_ylim(0.8, 5.2)
        axis.set_title(f"{name} (n={int(both.sum())})", fontsize=9)
        axis.set_xlabel("human (mean of raters)", fontsize=8)
    axes[0].set_ylabel("judge")
    figure.suptitle(f"Judge vs human: run {scores.run_id}, labels {scores.label_set}", fontsize=10)
    return _png(figure)


def _figure(**options: Any) -> Figure:
    """A new figure; matplotlib is imported on first use, since every CLI command imports this module."""
    from matplotlib.figure import Figure

    return Figure(**options)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
