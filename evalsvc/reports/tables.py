"""Reports as tables of text cells, rendered as aligned plain text (terminal) or HTML (`html.py`).

Each report becomes a list of `Table`s first, so the terminal and the HTML page show exactly the same
figures with the same formatting. Numbers are right-aligned, text left-aligned; a figure the data
cannot give is "-".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalsvc.reports.schemas import (
    AgreementFigures,
    AgreementReport,
    Comparison,
    Figure,
    GroupSummary,
    Leaderboards,
    RunSummary,
    ScoreStats,
)
from evalsvc.reports.table5 import EMPATHYEVAL_COLUMNS, LLM_COLUMNS, Table5
from evalsvc.store.report_queries import DIMENSIONS, SCORE_COLUMNS

MISSING = "-"


@dataclass(frozen=True)
class Table:
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str = ""


def number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def p_value(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3g}"


def share(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}%"


def interval(low: float | None, high: float | None) -> str:
    return MISSING if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def mean_pm(stats: ScoreStats) -> str:
    """Mean with the half-width of its 95% CI, e.g. "3.412 ±0.021"."""
    if stats.mean is None:
        return MISSING
    if stats.ci_high is None:
        return f"{stats.mean:.3f}"
    return f"{stats.mean:.3f} ±{stats.ci_high - stats.mean:.3f}"


def figure_cell(figure: Figure) -> str:
    """A bootstrapped mean as "mean [low, high]" (no interval under two items)."""
    if figure.mean is None:
        return MISSING
    return f"{figure.mean:.3f}" + (
        "" if figure.ci_low is None else f" {interval(figure.ci_low, figure.ci_high)}"
    )


def summary_tables(summary: RunSummary) -> list[Table]:
    overall = summary.overall
    if overall.verdicts:
        return _verdict_summary_tables(summary)
    head = (
        f"Run {summary.run_id} {summary.run_name!r} ({summary.mode}, {summary.status}): {overall.items} items, "
        f"{overall.scored} scored, {overall.failed} failed, {overall.pending} pending"
    )
    tables = [
        Table(
            head,
            ("score", "n", "mean", "95% CI", "std"),
            [
                (
                    name,
                    str(stats.n),
                    number(stats.mean),
                    interval(stats.ci_low, stats.ci_high),
                    number(stats.std),
                )
                for name, stats in overall.scores.items()
            ],
        ),
        Table(
            "Distribution (items per score bin)",
            ("score", *summary.histogram_bins),
            [(name, *map(str, stats.histogram)) for name, stats in overall.scores.items()],
        ),
    ]
    tables += _errors_table(summary)
    for title, groups in (
        ("By system", summary.by_system),
        ("By dataset", summary.by_dataset),
        ("By query emotion", summary.by_emotion),
    ):
        tables.append(_group_table(title, groups))
    return tables


def _errors_table(summary: RunSummary) -> list[Table]:
    """The items without a usable result by error code; no table when there are none."""
    if not summary.errors:
        return []
    return [Table("Errors", ("code", "items"), [(code, str(n)) for code, n in summary.errors.items()])]


def _verdict_summary_tables(summary: RunSummary) -> list[Table]:
    """An llm-mos / llm-ab run: its verdict figures overall and by system, dataset and emotion."""
    overall = summary.overall
    head = (
        f"Run {summary.run_id} {summary.run_name!r} ({summary.judge}, {summary.status}): {overall.items} items, "
        f"{overall.scored} judged, {overall.failed} failed, {overall.pending} pending"
    )
    note = "means with percentile-bootstrap 95% CIs over the judged items"
    tables = [
        Table(
            head,
            ("figure", "n", "mean", "95% CI"),
            [
                (name, str(figure.n), number(figure.mean), interval(figure.ci_low, figure.ci_high))
                for name, figure in overall.verdicts.items()
            ],
            note=note,
        )
    ]
    tables += _errors_table(summary)
    for title, groups in (
        ("By system", summary.by_system),
        ("By dataset", summary.by_dataset),
        ("By query emotion", summary.by_emotion),
    ):
        tables.append(
            Table(
                title,
                ("group", "items", "judged", "failed", *overall.verdicts),
                [
                    (
                        group.key or "(none)",
                        str(group.items),
                        str(group.scored),
                        str(group.failed),
                        *(figure_cell(group.verdicts[name]) for name in overall.verdicts),
                    )
                    for group in groups
                ],
                note=note,
            )
        )
    return tables


def _group_table(title: str, groups: Sequence[GroupSummary]) -> Table:
    return Table(
        title,
        ("group", "items", "scored", "failed", *SCORE_COLUMNS),
        [
            (
                group.key or "(none)",
                str(group.items),
                str(group.scored),
                str(group.failed),
                *(mean_pm(group.scores[name]) for name in SCORE_COLUMNS),
            )
            for group in groups
        ],
        note="mean ±half-width of its 95% CI",
    )


def leaderboard_tables(boards: Leaderboards) -> list[Table]:
    tables = []
    for board in boards.leaderboards:
        note = "mean ±half-width of its 95% CI"
        if len(board.model_versions) > 1:
            versions = ", ".join(map(str, board.model_versions))
            note += f"; WARNING: mixes results of judge model versions {versions}"
        tables.append(
            Table(
                f"Leaderboard: {board.dataset or '(no dataset)'} (sorted by {boards.sort})",
                ("rank", "system", "n", *DIMENSIONS, "Avg"),
                [
                    (
                        str(row.rank),
                        row.system or "(none)",
                        str(row.n),
                        *(mean_pm(row.scores[name]) for name in SCORE_COLUMNS),
                    )
                    for row in board.rows
                ],
                note=note,
            )
        )
    return tables or [Table("Leaderboard", ("rank", "system", "n"), [], note="no scored items")]


def table5_tables(report: Table5) -> list[Table]:
    """One row per system: EmpathyEval's five means, then AB_Score and MOS of each LLM judge column,
    then the A/B flip rates; every figure as "mean [95% CI]"."""

    llm_columns = list(LLM_COLUMNS)
    headers = (
        "system",
        *(f"EmpathyEval {name}" for name in EMPATHYEVAL_COLUMNS),
        *(f"{column} {figure}" for column in llm_columns for figure in ("AB_Score", "MOS")),
        *(f"{column} flip rate" for column in llm_columns),
    )
    rows = [
        (
            row.system,
            *(figure_cell(row.empathyeval[name]) for name in EMPATHYEVAL_COLUMNS),
            *(
                figure_cell(row.llm[column][figure])
                for column in llm_columns
                for figure in ("AB_Score", "MOS")
            ),
            *(figure_cell(row.llm[column]["flip_rate"]) for column in llm_columns),
        )
        for row in report.rows
    ]
    runs = ", ".join(f"{judge} run {run_id}" for judge, run_id in report.runs.items())
    scope = f", dataset {report.dataset}" if report.dataset else ""
    note = "means with percentile-bootstrap 95% CIs over the items of each system; '-': no such judge run"
    return [Table(f"Table 5 ({runs}{scope})", headers, rows, note)]


def comparison_tables(comparison: Comparison) -> list[Table]:
    def side(ref_run: int, system: str | None) -> str:
        return f"run {ref_run}" + (f" system {system!r}" if system is not None else "")

    title = (
        f"A = {side(comparison.a.run_id, comparison.a.system)} vs B = {side(comparison.b.run_id, comparison.b.system)}: "
        f"{comparison.pairs} pairs by {comparison.pair_by} "
        f"({comparison.unmatched_a} only in A, {comparison.unmatched_b} only in B)"
    )
    rows = [
        (
            name,
            number(figures.mean_a),
            number(figures.mean_b),
            number(figures.mean_difference),
            interval(figures.ci_low, figures.ci_high),
            share(figures.win),
            share(figures.tie),
            share(figures.loss),
            number(figures.ab_score),
            interval(figures.ab_ci_low, figures.ab_ci_high),
            p_value(figures.wilcoxon_p),
        )
        for name, figures in comparison.dimensions.items()
    ]
    headers = ("score", "A", "B", "A-B", "95% CI", "win", "tie", "loss", "AB", "AB 95% CI", "Wilcoxon p")
    note = (
        f"tie margin {comparison.tie_margin}; percentile bootstrap, {comparison.resamples} resamples, "
        f"seed {comparison.seed}"
    )
    return [Table(title, headers, rows, note=note)]


def agreement_tables(report: AgreementReport) -> list[Table]:
    raters = number(report.mean_raters, 2)
    title = (
        f"Agreement of run {report.run_id} with {report.label_set!r} (match by {report.match}): "
        f"{report.matched} of {report.labelled} labelled items scored, {raters} raters per item"
    )
    parts = ("LCC", "SRCC", "KTAU", "MSE")
    headers = ("score", *(f"utt {part}" for part in parts), *(f"sys {part}" for part in parts))
    rows = [(row.dimension, *_figures(row.utterance), *_figures(row.system)) for row in report.rows]
    systems = Table(
        "Per-system means (judge / human)",
        ("system", "n", *DIMENSIONS, "avg"),
        [
            (
                means.system or "(none)",
                str(means.n),
                *(
                    f"{number(means.model[name])} / {number(means.human[name])}"
                    for name in (*DIMENSIONS, "avg")
                ),
            )
            for means in report.systems
        ],
    )
    n_systems = report.rows[0].system.n if report.rows else 0
    note = (
        f"utterance level: n={report.rows[0].utterance.n if report.rows else 0} items; "
        f"system level: correlation of per-system means over {n_systems} systems (needs 3 or more)"
    )
    return [Table(title, headers, rows, note=note), systems]


def _figures(figures: AgreementFigures) -> tuple[str, ...]:
    return (number(figures.lcc), number(figures.srcc), number(figures.ktau), number(figures.mse))


def text_agreement_tables(report: dict[str, Any]) -> list[Table]:
    """`report text-agreement`: one row per metric (value, or why it is unavailable), then SER."""
    text = report["text"]
    title = (
        f"Text agreement of {report['run']} with {report['references']}: {report['matched']} items matched "
        f"({report['without_reference']} without a reference, {report['without_hypothesis']} references "
        "without an assessment)"
    )
    rows = [(name, number(value), "") for name, value in text["scores"].items()]
    rows += [(name, MISSING, why) for name, why in text["unavailable"].items()]
    metrics = Table(
        title, ("metric", "value", "unavailable because"), rows, note=f"tokenizer: {text['tokenizer']}"
    )
    ser = report["ser"]
    if "unavailable" in ser:
        note = ser["unavailable"]
    else:
        note = f"{ser['count']} items with emotion labels on both sides; labels: {', '.join(ser['labels'])}"
    ser_rows = [
        ("accuracy", number(ser.get("accuracy"))),
        ("unweighted accuracy", number(ser.get("unweighted_accuracy"))),
    ]
    return [metrics, Table("SER accuracy", ("metric", "value"), ser_rows, note=note)]


def render_text(tables: Sequence[Table]) -> str:
    """Aligned plain-text tables separated by blank lines."""
    return "\n\n".join(_text(table) for table in tables) + "\n"


def _text(table: Table) -> str:
    widths = [len(header) for header in table.headers]
    for row in table.rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [all(_is_numeric(row[index]) for row in table.rows) for index in range(len(widths))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    lines = [table.title, line(table.headers), line(["-" * width for width in widths])]
    lines += [line(row) for row in table.rows] or ["(nothing to show)"]
    if table.note:
        lines.append(f"({table.note})")
    return "\n".join(lines)


def _is_numeric(cell: str) -> bool:
    return cell == MISSING or cell.lstrip("-[").replace(".", "", 1)[:1].isdigit()
