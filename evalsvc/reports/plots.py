"""Report plots as PNG bytes: score distributions, a radar chart of systems, judge-vs-human scatter.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg canvas, never through
`pyplot`: no display is needed, no global figure state is kept, and concurrent HTTP requests do not
share anything. Inputs are report objects already computed (histograms come from the SQL summary),
so a plot reads no data of its own except the scatter's vectors.

Readable where they are shown: every figure is at most `MAX_WIDTH_IN` wide at `DPI`, so the HTML
report (up to 72em wide, images shrunk only to fit) shows it at full size in a window 700 px wide,
and no text is smaller than `MIN_FONT_PT` (8 pt at 100 dpi: 11 px). Panels are laid out in a grid
rather than a strip for that reason. On the radar, systems differ in marker, line style, line width
and marker size (the first widest and largest), so a system whose means equal another's still
shows around it, and its
legend entry says which system it coincides with; the radial scale labels sit between two axes on
an opaque box above the shapes.
"""

from __future__ import annotations

import io
import math
from itertools import cycle
from typing import TYPE_CHECKING, Any

import numpy as np

from evalsvc.reports.agreement import LabelledScores
from evalsvc.reports.schemas import Leaderboard, RunSummary
from evalsvc.stats import BIN_EDGES
from evalsvc.store.report_queries import DIMENSIONS, SCORE_COLUMNS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
MAX_WIDTH_IN = 6.8
MIN_FONT_PT = 8.0
_TICKS = 8.0
_TITLE = 9.5
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINE_STYLES = ("-", "--", "-.", ":")
_BIN_CENTRES = [f"{edge - 0.5:g}" for edge in BIN_EDGES] + [f"{BIN_EDGES[-1] + 0.5:g}"]


def distributions_png(summary: RunSummary) -> bytes:
    return _png(distributions_figure(summary))


def radar_png(board: Leaderboard) -> bytes:
    return _png(radar_figure(board))


def scatter_png(scores: LabelledScores) -> bytes:
    return _png(scatter_figure(scores))


def distributions_figure(summary: RunSummary) -> Figure:
    """One bar chart per dimension (and avg), three to a row: how many items fall in each bin."""
    columns = 3
    rows = math.ceil(len(SCORE_COLUMNS) / columns)
    figure = _figure(figsize=(MAX_WIDTH_IN, 2.3 * rows + 0.4))
    axes = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    positions = np.arange(len(summary.histogram_bins))
    for axis, name in zip(axes, SCORE_COLUMNS, strict=False):
        stats = summary.overall.scores[name]
        axis.bar(positions, stats.histogram or [0] * len(positions), color="#4c72b0")
        # Bins are named "<1.5", "1.5-2.5", ...: their centres, the ratings 1-5, fit at a legible size.
        axis.set_xticks(positions, _BIN_CENTRES)
        axis.tick_params(labelsize=_TICKS)
        mean = "n/a" if stats.mean is None else f"{stats.mean:.2f}"
        axis.set_title(f"{name}: n={stats.n}, mean {mean}", fontsize=_TITLE)
    for axis in axes[len(SCORE_COLUMNS) :]:
        axis.set_visible(False)
    for axis in axes[::columns]:
        axis.set_ylabel("items", fontsize=_TICKS)
    figure.supxlabel(
        "score, in bins one point wide around 1, 2, 3, 4, 5 (the outer ones open)", fontsize=_TICKS
    )
    figure.suptitle(f"Score distributions: run {summary.run_id} ({summary.run_name})", fontsize=_TITLE)
    return figure


def radar_figure(board: Leaderboard) -> Figure:
    """Each system's mean NS, WA, EU, ES on one polar chart (scale 1-5), NS at the top."""
    angles = np.linspace(0, 2 * np.pi, len(DIMENSIONS), endpoint=False)
    closed = np.append(angles, angles[0])
    figure = _figure(figsize=(MAX_WIDTH_IN, 4.6))
    axis = figure.add_subplot(projection="polar")
    axis.set_theta_offset(np.pi / 2)
    axis.set_theta_direction(-1)
    drawn: dict[tuple[float, ...], str] = {}
    styles = zip(cycle(_MARKERS), cycle(_LINE_STYLES), strict=False)
    plotted = [row for row in board.rows if all(row.scores[name].mean is not None for name in DIMENSIONS)]
    for index, (row, (marker, style)) in enumerate(zip(plotted, styles, strict=False)):
        values = np.array([row.scores[name].mean for name in DIMENSIONS], dtype=np.float64)
        name = row.system or "(none)"
        key = tuple(np.round(values, 2))
        label = f"{name} (same as {drawn[key]})" if key in drawn else name
        drawn.setdefault(key, name)
        ring = np.append(values, values[0])
        size = max(9.0 - 1.6 * index, 3.5)
        (line,) = axis.plot(
            closed,
            ring,
            linestyle=style,
            linewidth=1.6,
            marker=marker,
            markersize=size,
            alpha=0.85,
            label=label,
        )
        axis.fill(closed, ring, alpha=0.06, color=line.get_color())
    axis.set_xticks(angles, list(DIMENSIONS), fontsize=_TITLE)
    axis.tick_params(axis="x", pad=6)
    axis.set_ylim(1, 5)
    axis.set_yticks([2, 3, 4, 5], ["2", "3", "4", "5"], fontsize=_TICKS)
    axis.set_rlabel_position(45)  # between NS and WA
    for label in axis.get_yticklabels():
        label.set_bbox(
            {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.9}
        )
        label.set_zorder(10)
    axis.set_title(f"Systems on {board.dataset or '(no dataset)'}", fontsize=_TITLE, pad=14)
    if plotted:
        figure.legend(loc="outside right upper", fontsize=_TICKS, frameon=False)
    return figure


def scatter_figure(scores: LabelledScores) -> Figure:
    """Judge score against mean human rating, one panel per dimension (two to a row), with the
    identity line."""
    figure = _figure(figsize=(MAX_WIDTH_IN, 6.4))
    axes = figure.subplots(2, 2, sharex=True, sharey=True).ravel()
    for axis, name in zip(axes, DIMENSIONS, strict=True):
        model, human = scores.model[name], scores.human[name]
        both = ~(np.isnan(model) | np.isnan(human))
        axis.scatter(human[both], model[both], s=10, alpha=0.5, color="#dd8452")
        axis.plot([1, 5], [1, 5], color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlim(0.8, 5.2)
        axis.set_ylim(0.8, 5.2)
        axis.tick_params(labelsize=_TICKS)
        axis.set_title(f"{name} (n={int(both.sum())})", fontsize=_TITLE)
    figure.supxlabel("human (mean of raters)", fontsize=_TICKS)
    figure.supylabel("judge", fontsize=_TICKS)
    figure.suptitle(f"Judge vs human: run {scores.run_id}, labels {scores.label_set}", fontsize=_TITLE)
    return figure


def _figure(**options: Any) -> Figure:
    """A new figure; matplotlib is imported on first use, since every CLI command imports this module."""
    from matplotlib.figure import Figure

    return Figure(dpi=DPI, layout="constrained", **options)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
