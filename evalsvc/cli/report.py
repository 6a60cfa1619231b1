"""`evalsvc report summary|leaderboard|compare|agreement|export|plot|html`: what the scores say.

    evalsvc report summary RUN                          means with 95% CI, distribution, failures
    evalsvc report leaderboard [--run RUN ...] [--dataset D] [--sort avg]
    evalsvc report leaderboard --run RUN --layout table5  EmpathyEval beside the LLM judges (Table 5)
    evalsvc report compare --run A --run B              the same items in two runs
    evalsvc report compare --run R --system X --system Y  two systems on the same queries
    evalsvc report agreement RUN --labels SET           judge vs human ratings (Table 4 layout)
    evalsvc report agreement RUN --teacher RUN          judge vs a teacher run's scores, same layout
    evalsvc report text-agreement RUN --references FILE|--teacher RUN
                                                        BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SER accuracy
    evalsvc report export RUN [RUN ...] --format csv|jsonl|parquet [-o FILE]
    evalsvc report plot RUN -o DIR [--labels SET]       PNG plots
    evalsvc report html RUN -o report.html [--labels SET]

Tables go to stdout as aligned text; `--json` prints the report as JSON instead (the same shape as
`GET /v1/reports/...`). The local CLI sees every run of its database; `--tenant NAME` narrows it to
one tenant's runs and label sets, as the HTTP API does for an API key.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import get_args

from pydantic import BaseModel
from sqlalchemy.orm import Session

from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR, add_store_options, fail, print_json
from evalsvc.errors import ReferencesInvalid
from evalsvc.outdirs import output_directory
from evalsvc.reports import (
    agreement_report,
    compare,
    export_batches,
    labelled_scores,
    leaderboards,
    run_report_html,
    run_summary,
    write_export,
)
from evalsvc.reports.agreement import teacher_scores
from evalsvc.reports.compare import DEFAULT_RESAMPLES, DEFAULT_TIE_MARGIN, sides
from evalsvc.reports.export import EXPORT_FORMATS, export_columns
from evalsvc.reports.plots import distributions_png, radar_png, scatter_png
from evalsvc.reports.summary import SORT_KEYS
from evalsvc.reports.table5 import table5
from evalsvc.reports.tables import (
    Table,
    agreement_tables,
    comparison_tables,
    leaderboard_tables,
    render_text,
    summary_tables,
    table5_tables,
    text_agreement_tables,
)
from evalsvc.reports.text_agreement import judged_texts, read_references, teacher_texts, text_agreement_report
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.report_queries import Match, PairBy
from evalsvc.store.scope import tenant_id_by_name


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="summaries, leaderboards, A/B comparisons, human agreement, exports, plots, HTML",
        description="Reports on stored scores (see README 'Reports').",
    )
    actions = parser.add_subparsers(dest="report_action", required=True, metavar="ACTION")

    summary = actions.add_parser("summary", help="a run's means with 95%% CI, distribution and failures")
    summary.add_argument("run", type=int, metavar="RUN")

    board = actions.add_parser("leaderboard", help="systems ranked per dataset (the paper's Table 5)")
    board.add_argument(
        "--run", type=int, action="append", default=[], help="a run to include (repeat; default all)"
    )
    board.add_argument("--dataset", help="only this dataset")
    board.add_argument("--sort", choices=SORT_KEYS, default="avg", help="ranking column (default avg)")
    board.add_argument(
        "--layout",
        choices=("ranked", "table5"),
        default="ranked",
        help="ranked: systems per dataset (default); table5: the paper's Table 5, EmpathyEval beside the "
        "LLM judges of the runs' judge groups, each figure with its bootstrap CI",
    )

    pair = actions.add_parser("compare", help="paired comparison of two runs or two systems")
    pair.add_argument(
        "--run", type=int, action="append", required=True, help="run A, then run B (or one run)"
    )
    pair.add_argument("--system", action="append", default=[], help="system A, then system B")
    pair.add_argument(
        "--pair-by", choices=get_args(PairBy), help="item key or query audio (default: see docs)"
    )
    pair.add_argument("--dataset", help="only items of this dataset")
    pair.add_argument(
        "--tie-margin", type=float, default=DEFAULT_TIE_MARGIN, help="|A-B| up to this is a tie"
    )
    pair.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    pair.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    agree = actions.add_parser(
        "agreement", help="agreement with a label set of human ratings, or a teacher run (Table 4)"
    )
    agree.add_argument("run", type=int, metavar="RUN")
    reference = agree.add_mutually_exclusive_group(required=True)
    reference.add_argument("--labels", metavar="SET", help="label set name (evalsvc labels import)")
    reference.add_argument(
        "--teacher",
        type=int,
        metavar="RUN",
        help="a run whose scores are the reference (e.g. the LLM judge's)",
    )
    agree.add_argument(
        "--match", choices=get_args(Match), default="item", help="join labels by item key or audio"
    )

    texts = actions.add_parser(
        "text-agreement",
        help="the run's assessments vs references: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SER accuracy",
        description="Captioning metrics (pycocoevalcap) of the run's assessments against reference "
        "assessments matched by item key, their SCORES lines removed; SER accuracy where both sides "
        "have emotion labels. SPICE, SPIDEr and FENSE are reported as unavailable offline, with why.",
    )
    texts.add_argument("run", type=int, metavar="RUN")
    given = texts.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--references",
        type=Path,
        metavar="FILE",
        help="JSON lines or CSV: item_key, assessment, optional emotion (a run's export works)",
    )
    given.add_argument(
        "--teacher", type=int, metavar="RUN", help="a run whose assessments are the references"
    )

    export = actions.add_parser("export", help="items joined with results as CSV, JSON lines or Parquet")
    export.add_argument("runs", type=int, nargs="+", metavar="RUN")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    export.add_argument(
        "-o", "--output", type=Path, help="file to write (default stdout; Parquet needs a file)"
    )
    export.add_argument("--dataset", help="only items of this dataset")
    export.add_argument("--system", help="only items of this system")

    plot = actions.add_parser("plot", help="PNG plots of a run: distributions, radar, scatter vs labels")
    plot.add_argument("run", type=int, metavar="RUN")
    plot.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DIR", help="directory for the PNGs"
    )

    page = actions.add_parser("html", help="one self-contained HTML page with a run's tables and plots")
    page.add_argument("run", type=int, metavar="RUN")
    page.add_argument("-o", "--output", type=Path, required=True, help="the .html file to write")

    for action in (plot, page):
        action.add_argument("--labels", metavar="SET", help="add agreement with this label set")
        action.add_argument("--match", choices=get_args(Match), default="item")
    for action in (summary, board, pair, agree, texts):
        action.add_argument("--json", action="store_true", help="print JSON instead of tables")
    for action in (summary, board, pair, agree, texts, export, plot, page):
        action.add_argument("--tenant", help="only this tenant's runs and label sets")
        add_store_options(action, data_dir=True)
        action.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings)
    action = args.report_action
    if action == "export":
        return _export(args, store)
    with store.session() as session:
        tenant_id = tenant_id_by_name(session, args.tenant)
        if action == "summary":
            report = run_summary(session, args.run, tenant_id)
            return _show(args, report, summary_tables(report))
        if action == "leaderboard" and args.layout == "table5":
            report = table5(session, args.run, tenant_id, dataset=args.dataset)
            return _show(args, report, table5_tables(report))
        if action == "leaderboard":
            boards = leaderboards(session, tenant_id, run_ids=args.run, dataset=args.dataset, sort=args.sort)
            return _show(args, boards, leaderboard_tables(boards))
        if action == "compare":
            side_a, side_b = sides(args.run, args.system)
            comparison = compare(
                session,
                tenant_id,
                side_a,
                side_b,
                pair_by=args.pair_by,
                dataset=args.dataset,
                tie_margin=args.tie_margin,
                resamples=args.resamples,
                seed=args.seed,
            )
            return _show(args, comparison, comparison_tables(comparison))
        if action == "agreement":
            scores = (
                labelled_scores(session, args.run, args.labels, tenant_id, args.match)
                if args.teacher is None
                else teacher_scores(session, args.run, args.teacher, tenant_id, args.match)
            )
            agreement = agreement_report(scores)
            return _show(args, agreement, agreement_tables(agreement))
        if action == "text-agreement":
            return _text_agreement(args, session, tenant_id)
        if action == "plot":
            return _plot(args, session, tenant_id)
        page = run_report_html(session, args.run, tenant_id, labels=args.labels, match=args.match)
    args.output.write_text(page, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _show(args: argparse.Namespace, report: BaseModel, tables: list[Table]) -> int:
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        sys.stdout.write(render_text(tables))
    return EXIT_OK


def _text_agreement(args: argparse.Namespace, session: Session, tenant_id: int | None) -> int:
    """Every bad line of a references file is printed as FILE:LINE: message before the error."""
    hypotheses = judged_texts(session, args.run, tenant_id)
    if args.teacher is not None:
        references = teacher_texts(session, args.teacher, tenant_id)
    else:
        try:
            references = read_references(args.references)
        except ReferencesInvalid as error:
            for line, message in error.problems:
                print(f"{args.references}:{line}: {message}", file=sys.stderr)
            return fail(error.code, error.message, EXIT_USER_ERROR)
    report = text_agreement_report(hypotheses, references)
    if args.json:
        print_json(report)
    else:
        sys.stdout.write(render_text(text_agreement_tables(report)))
    return EXIT_OK


def _export(args: argparse.Namespace, store: Store) -> int:
    if args.format == "parquet" and args.output is None:
        return fail("invalid_parameter", "Parquet is binary: give a file with -o/--output", EXIT_USER_ERROR)
    with store.session() as session:
        tenant_id = tenant_id_by_name(session, args.tenant)
        batches = export_batches(session, args.runs, tenant_id, dataset=args.dataset, system=args.system)
        columns = export_columns(session, args.runs)
        if args.output is None:
            write_export(batches, args.format, sys.stdout.buffer, columns)
            sys.stdout.buffer.flush()
            return EXIT_OK
        with args.output.open("wb") as sink:
            write_export(batches, args.format, sink, columns)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _plot(args: argparse.Namespace, session: Session, tenant_id: int | None) -> int:
    """Every image is drawn before DIR is made, so a failure (no such run or label set) leaves no
    empty directory behind."""
    files = {"distributions.png": distributions_png(run_summary(session, args.run, tenant_id))}
    for board in leaderboards(session, tenant_id, run_ids=[args.run]).leaderboards:
        files[f"radar-{_slug(board.dataset)}.png"] = radar_png(board)
    if args.labels is not None:
        files["agreement.png"] = scatter_png(
            labelled_scores(session, args.run, args.labels, tenant_id, args.match)
        )
    with output_directory(args.output) as directory:
        for name, image in files.items():
            (directory / name).write_bytes(image)
            print(f"wrote {directory / name}", file=sys.stderr)
    return EXIT_OK


def _slug(name: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "none")
