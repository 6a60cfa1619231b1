"""What each report returns: pydantic models, so the CLI's JSON, the HTTP answers and the OpenAPI
document are one and the same shape.

Score dimensions are keyed by the names of the scoring API: "NS", "WA", "EU", "ES" and "avg".
Figures the data cannot give (the CI of one value, a correlation over two systems) are null.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from evalsvc.stats import Agreement, Description


class ReportBase(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScoreStats(ReportBase):
    """One dimension over a group: mean with its t-distribution 95% CI, spread and distribution."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    histogram: list[int] = []
    """Items per bin of the summary's `histogram_bins` (summaries only)."""

    @classmethod
    def of(cls, description: Description) -> ScoreStats:
        return cls(
            n=description.n,
            mean=description.mean,
            std=description.std,
            ci_low=description.ci_low,
            ci_high=description.ci_high,
            histogram=description.histogram,
        )


class Figure(ReportBase):
    """A mean over judged items with its percentile-bootstrap 95% CI (None where there are none)."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None


class GroupSummary(ReportBase):
    """The items of one group (a whole run, or one system, dataset or query emotion of it)."""

    key: str | None
    """The system, dataset or emotion; null for items without one (and for the whole run)."""
    items: int
    scored: int
    """Items with a score (their result has an `avg`), or with a verdict in an llm-mos / llm-ab run."""
    failed: int
    pending: int
    scores: dict[str, ScoreStats]
    verdicts: dict[str, Figure] = {}
    """llm-mos runs: 'MOS'; llm-ab runs: 'AB_Score' and 'flip_rate'; empty for other judges."""


class RunSummary(ReportBase):
    run_id: int
    run_name: str
    mode: str
    judge: str
    status: str
    histogram_bins: list[str]
    overall: GroupSummary
    errors: dict[str, int]
    """Items without a usable result by error code, most frequent first."""
    by_system: list[GroupSummary]
    by_dataset: list[GroupSummary]
    by_emotion: list[GroupSummary]


class LeaderboardRow(ReportBase):
    rank: int
    system: str | None
    n: int
    scores: dict[str, ScoreStats]


class Leaderboard(ReportBase):
    """The systems of one dataset, like the paper's Table 5."""

    dataset: str | None
    model_versions: list[int]
    """The judges whose results are in the board; more than one means the board mixes judges."""
    rows: list[LeaderboardRow]


class Leaderboards(ReportBase):
    runs: list[int]
    """The runs asked for; empty: every run the caller can see."""
    sort: str
    leaderboards: list[Leaderboard]


class SideRef(ReportBase):
    run_id: int
    system: str | None


class DimensionComparison(ReportBase):
    """A minus B on one dimension over the paired items."""

    mean_a: float | None
    mean_b: float | None
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None
    """Percentile bootstrap 95% CI of the mean difference."""
    win: float | None
    tie: float | None
    loss: float | None
    """Shares of pairs where A is ahead by more than the tie margin, within it, behind by more."""
    ab_score: float | None
    """Mean of +1 (win), 0 (tie), -1 (loss): the paper's AB score, in -1..1."""
    ab_ci_low: float | None
    ab_ci_high: float | None
    wilcoxon_p: float | None


class Comparison(ReportBase):
    a: SideRef
    b: SideRef
    pair_by: Literal["item", "query"]
    dataset: str | None
    pairs: int
    unmatched_a: int
    unmatched_b: int
    tie_margin: float
    resamples: int
    seed: int
    dimensions: dict[str, DimensionComparison]


class AgreementFigures(ReportBase):
    n: int
    lcc: float | None
    srcc: float | None
    ktau: float | None
    mse: float | None

    @classmethod
    def of(cls, figures: Agreement) -> AgreementFigures:
        return cls(n=figures.n, lcc=figures.lcc, srcc=figures.srcc, ktau=figures.ktau, mse=figures.mse)


class AgreementRow(ReportBase):
    """One row of the paper's Table 4: a dimension at utterance and at system level."""

    dimension: str
    utterance: AgreementFigures
    system: AgreementFigures


class SystemMeans(ReportBase):
    system: str | None
    n: int
    model: dict[str, float | None]
    human: dict[str, float | None]


class AgreementReport(ReportBase):
    run_id: int
    label_set: str
    match: Literal["item", "audio"]
    labelled: int
    """Items (or audio pairs) rated in the label set."""
    matched: int
    """Of those, scored items of the run."""
    mean_raters: float | None
    rows: list[AgreementRow]
    systems: list[SystemMeans]
