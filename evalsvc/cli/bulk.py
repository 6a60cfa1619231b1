"""`evalsvc bulk submit|run|resume|cancel|status|results`: whole datasets, from a manifest.

    evalsvc bulk run MANIFEST --name NAME       in this process, no Redis (the embedded default)
    evalsvc bulk submit MANIFEST --name NAME    record in SQL, queue shard jobs for `evalsvc worker`
    evalsvc bulk status|cancel|resume RUN       what SQL says; stop; re-queue every unfinished item
    evalsvc bulk results RUN [--format csv]     one row per item, JSON lines or CSV
    evalsvc bulk list [--tenant NAME]           the runs, newest first

Runs recorded here belong to the tenant `--tenant` (default `local`, the tenant `serve --no-auth`
acts as), so a local server on the same database shows them; the other commands act on any run.

Data roots: audio paths in a manifest must lie under a data root. The roots are `--data-root`
flags, else `EVALSVC_DATA_ROOTS`, else the manifest's own directory: a dataset directory holding its
manifest works with no configuration, and no row can reach outside it (`../../etc/passwd`).

stdout carries the answer (the run id of `submit`; JSON of `run`, `status`, `cancel`, `resume`; the
rows of `results`), stderr the progress bar and messages, so each composes in a shell script.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalsvc.bulk.estimates import dry_run_plan, plan_lines
from evalsvc.bulk.manifest import Manifest, ManifestItem, check_references, read_manifest
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.progress import ProgressBar, wait_for_run
from evalsvc.bulk.queue import ShardQueue
from evalsvc.bulk.results import encode_rows, read_page
from evalsvc.bulk.run_operations import (
    cancel_run,
    check_budget,
    list_runs,
    queue_run,
    record_runs,
    reopen_run,
    run_in_process,
    run_progress,
    run_state,
    set_max_cost,
    submit_runs,
)
from evalsvc.bulk.scorers import build_item_scorer
from evalsvc.cli.common import (
    EXIT_CONFIG_ERROR,
    EXIT_OK,
    EXIT_USER_ERROR,
    add_model_options,
    add_store_options,
    add_tenant_option,
    fail,
    print_json,
    tenant_id_for,
)
from evalsvc.engine.types import MODES
from evalsvc.errors import (
    InvalidParameter,
    LLMBudgetExceeded,
    ManifestInvalid,
    QueueUnavailable,
    ServiceBusy,
    StoreError,
)
from evalsvc.judges.judges import JUDGE_IDS
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.models import EMPATHYEVAL_JUDGE
from evalsvc.store.run_records import RunProgress
from evalsvc.store.scope import tenant_id_by_name

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C

# Flag -> Settings field for the bulk knobs (model and store flags are handled in common).
BULK_FLAGS: dict[str, str] = {
    "redis_url": "redis_url",
    "queue": "bulk_queue",
    "shard_size": "bulk_shard_size",
    "batch_size": "bulk_batch_size",
    "model_url": "model_url",
    "data_root": "data_roots",
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bulk",
        help="score whole datasets from a manifest (queued on RQ, or in process)",
        description="Bulk runs: every manifest row scored exactly once, recorded in SQL, resumable.",
    )
    actions = parser.add_subparsers(dest="bulk_action", required=True, metavar="ACTION")

    submit = actions.add_parser("submit", help="record a run and queue its shards for `evalsvc worker`")
    _manifest_arguments(submit)
    submit.add_argument("--wait", action="store_true", help="show a progress bar until the run finishes")
    _queue_options(submit)
    add_store_options(submit, data_dir=True)
    submit.set_defaults(handler=_submit)

    inline = actions.add_parser("run", help="record a run and score it in this process (no Redis)")
    _manifest_arguments(inline)
    inline.add_argument("--batch-size", type=int, help="pairs per model call (EVALSVC_BULK_BATCH_SIZE)")
    inline.add_argument("--model-url", help="score through `evalsvc serve` at this URL instead")
    inline.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_model_options(inline)
    add_store_options(inline)
    inline.set_defaults(handler=_run_inline)

    resume = actions.add_parser("resume", help="queue (or --inline: score) every unfinished item again")
    resume.add_argument("run_id", type=int, metavar="RUN")
    resume.add_argument("--retry-failed", action="store_true", help="also retry the items that failed")
    resume.add_argument("--inline", action="store_true", help="score here instead of queueing (no Redis)")
    resume.add_argument("--wait", action="store_true", help="show a progress bar until the run finishes")
    resume.add_argument("--shard-size", type=int, help="items per shard job (EVALSVC_BULK_SHARD_SIZE)")
    resume.add_argument("--batch-size", type=int, help="pairs per model call, with --inline")
    resume.add_argument("--model-url", help="with --inline: score through `evalsvc serve` at this URL")
    resume.add_argument(
        "--max-cost", type=float, metavar="USD", help="a new LLM budget for the run's group (needs prices)"
    )
    _queue_options(resume)
    add_model_options(resume)
    add_store_options(resume)
    resume.set_defaults(handler=_resume)

    cancel = actions.add_parser("cancel", help="stop a run: no further item is scored")
    cancel.add_argument("run_id", type=int, metavar="RUN")
    _queue_options(cancel)
    add_store_options(cancel, data_dir=True)
    cancel.set_defaults(handler=_cancel)

    status = actions.add_parser("status", help="a run's state and counts, as JSON")
    status.add_argument("run_id", type=int, metavar="RUN")
    _queue_options(status)
    add_store_options(status, data_dir=True)
    status.set_defaults(handler=_status)

    listing = actions.add_parser("list", help="the runs, newest first, with their counts (JSON)")
    listing.add_argument("--tenant", help="only this tenant's runs (default: every run)")
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many runs (default: %(default)s)"
    )
    add_store_options(listing, data_dir=True)
    listing.set_defaults(handler=_list)

    results = actions.add_parser("results", help="a run's results, one row per item")
    results.add_argument("run_id", type=int, metavar="RUN")
    results.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    results.add_argument("--output", type=Path, help="write to this file instead of stdout")
    add_store_options(results, data_dir=True)
    results.set_defaults(handler=_results)


def run_name(value: str) -> str:
    """`--name`: what the runs table can hold (argparse turns the ValueError into exit 2)."""
    if not 1 <= len(value) <= 200:
        raise argparse.ArgumentTypeError(f"a run name has 1-200 characters, not {len(value)}")
    return value


def _manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="a .jsonl or .csv manifest")
    parser.add_argument("--name", required=True, type=run_name, help="a name for the run (1-200 characters)")
    parser.add_argument("--mode", choices=MODES, default="scores", help="what to produce (default: scores)")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="run the valid rows and skip the invalid ones"
    )
    parser.add_argument(
        "--data-root",
        action="append",
        help="a directory audio paths must lie under (repeatable; default: EVALSVC_DATA_ROOTS, "
        "else the manifest's directory)",
    )
    parser.add_argument("--shard-size", type=int, help="items per shard job (EVALSVC_BULK_SHARD_SIZE)")
    parser.add_argument(
        "--judge",
        type=judge_list,
        default=[EMPATHYEVAL_JUDGE],
        help="comma-separated judges, one run each, linked as a group (default: empathyeval; LLM judges: "
        f"{', '.join(JUDGE_IDS)}); the A/B judges need reference_audio or reference_transcript per row",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the LLM calls, estimated tokens and cost per judge, and stop before recording anything",
    )
    parser.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="stop the runs before a batch of LLM calls could take their ledger past this (needs prices)",
    )
    add_tenant_option(parser, "the run")


def judge_list(value: str) -> list[str]:
    """`--judge a,b`: known judge ids, each once, in the order given."""
    judges = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in judges if name not in (EMPATHYEVAL_JUDGE, *JUDGE_IDS)]
    if unknown or not judges:
        raise argparse.ArgumentTypeError(
            f"unknown judge(s) {', '.join(unknown) or '(none given)'}; use {EMPATHYEVAL_JUDGE} or one of "
            f"{', '.join(JUDGE_IDS)}"
        )
    return list(dict.fromkeys(judges))


def _queue_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("queue (override EVALSVC_* settings)")
    group.add_argument("--redis-url", help="Redis of the bulk queue (EVALSVC_REDIS_URL)")
    group.add_argument("--queue", help="RQ queue name (EVALSVC_BULK_QUEUE)")


def bulk_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """`settings` with the bulk flags that were given applied (and validated)."""
    overrides: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in BULK_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    try:
        return Settings.model_validate(settings.model_dump() | overrides)
    except ValidationError as error:
        raise InvalidParameter(str(error).replace("\n", " ")) from None


def _accepted_items(args: argparse.Namespace, settings: Settings) -> list[ManifestItem] | int:
    """The manifest's items to run, or the exit code after every problem was printed."""
    roots = settings.data_roots or [args.manifest.resolve().parent]
    manifest: Manifest = read_manifest(args.manifest, roots)
    try:
        items = manifest.accepted(skip_invalid=args.skip_invalid)
    except ManifestInvalid as error:
        for line, message in error.problems:
            print(f"{args.manifest}:{line}: {message}", file=sys.stderr)
        hint = "" if args.skip_invalid else "; nothing was queued (--skip-invalid runs the valid rows)"
        return fail(error.code, f"{manifest.summary()}: {args.manifest}{hint}", EXIT_USER_ERROR)
    for problem in manifest.problems:
        print(f"{args.manifest}:{problem.line}: skipped: {problem.message}", file=sys.stderr)
    try:
        check_references(items, args.judge)
    except ManifestInvalid as error:
        for line, message in error.problems:
            print(f"{args.manifest}:{line}: {message}", file=sys.stderr)
        return fail(error.code, f"{error.message}: {args.manifest}; nothing was recorded", EXIT_USER_ERROR)
    return items


def _opened(args: argparse.Namespace, settings: Settings) -> tuple[Settings, list[ManifestItem], Store] | int:
    """The settings, the manifest's accepted items and the store of `bulk submit` / `bulk run`; an
    exit code when there is nothing more to do: the manifest must be fixed first, or `--dry-run`
    printed the plan."""
    settings = bulk_settings(args, settings)
    items = _accepted_items(args, settings)
    if isinstance(items, int):
        return items
    check_budget(settings, args.max_cost, "--max-cost")
    if args.dry_run:
        return _dry_run(args, settings, items)
    return settings, items, Store.from_settings(settings)


def _dry_run(args: argparse.Namespace, settings: Settings, items: list[ManifestItem]) -> int:
    """What the judges would call and cost, printed as JSON; nothing recorded, nothing called."""
    plan = dry_run_plan(settings, len(items), args.judge)
    print_json(plan)
    for line in plan_lines(plan):
        print(line, file=sys.stderr)
    return EXIT_OK


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    opened = _opened(args, settings)
    if isinstance(opened, int):
        return opened
    settings, items, store = opened
    try:
        submitted = submit_runs(
            store,
            lambda: ShardQueue.from_settings(settings),
            name=args.name,
            mode=args.mode,
            items=items,
            shard_size=settings.bulk_shard_size,
            tenant_id=tenant_id_for(store, args.tenant),
            judges=args.judge,
            max_cost_usd=args.max_cost,
            on_recorded=lambda run_ids: print(*run_ids, sep="\n", flush=True),
        )
    except QueueUnavailable as error:
        return fail(error.code, error.message, EXIT_CONFIG_ERROR)
    for run_id, judge, queued in zip(submitted.run_ids, args.judge, submitted.queued_jobs, strict=True):
        print(
            f"run {run_id} ({judge}): {len(items)} items in {queued} shard job(s) on {settings.bulk_queue}",
            file=sys.stderr,
        )
    if args.wait:
        for run_id in submitted.run_ids:
            _wait(store, run_id)
    return EXIT_OK


def _run_inline(args: argparse.Namespace, settings: Settings) -> int:
    opened = _opened(args, settings)
    if isinstance(opened, int):
        return opened
    settings, items, store = opened
    run_ids = record_runs(
        store,
        name=args.name,
        mode=args.mode,
        items=items,
        tenant_id=tenant_id_for(store, args.tenant),
        judges=args.judge,
        max_cost_usd=args.max_cost,
    )
    for run_id, judge in zip(run_ids, args.judge, strict=True):
        print(f"run {run_id} ({judge}): {len(items)} items recorded, scored in this process", file=sys.stderr)
    context = ShardContext.from_settings(settings, store, build_item_scorer(settings, store, load_now=False))
    states = []
    for index, run_id in enumerate(run_ids):
        code = _score_here(
            store,
            context,
            run_id,
            settings.bulk_shard_size,
            progress=not args.no_progress,
            show=False,
            unscored=run_ids[index + 1 :],
        )
        if code != EXIT_OK:
            return code
        states.append(run_state(store, run_id).to_dict())
    print_json(states[0] if len(states) == 1 else states)
    return EXIT_OK


def _score_here(
    store: Store,
    context: ShardContext,
    run_id: int,
    shard_size: int,
    *,
    progress: bool,
    show: bool = True,
    unscored: Sequence[int] = (),
) -> int:
    """Score the run's pending items in this process; an interruption loses nothing done so far. On a
    stop, the resume command of the run and of each of `unscored` (the later runs of its judge group,
    which a stop leaves unscored) is printed, one line each."""
    bar = ProgressBar(run_progress(store, run_id)) if progress else None
    try:
        run_in_process(store, context, run_id, shard_size, bar.update if bar else lambda _p: None)
    except KeyboardInterrupt:
        return _stopped("interrupted", f"run {run_id} stopped", [run_id, *unscored], "", EXIT_INTERRUPTED)
    except (ServiceBusy, StoreError) as error:
        message = f"run {run_id} stopped: {error.message}"
        return _stopped(error.code, message, [run_id, *unscored], "", EXIT_CONFIG_ERROR)
    except LLMBudgetExceeded as error:
        message = f"run {run_id} stopped: {error.message}"
        return _stopped(error.code, message, [run_id, *unscored], " --max-cost USD", EXIT_USER_ERROR)
    finally:
        if bar is not None:
            bar.close()
    if show:
        print_json(run_state(store, run_id).to_dict())
    return EXIT_OK


def _stopped(code: str, message: str, unfinished: Sequence[int], options: str, exit_code: int) -> int:
    """The error, then how to continue each unfinished run (the stopped one first)."""
    which = "it" if len(unfinished) == 1 else f"runs {', '.join(map(str, unfinished))} with"
    fail(code, f"{message}; continue {which}:", exit_code)
    for run_id in unfinished:
        print(f"  evalsvc bulk resume {run_id} --inline{options}", file=sys.stderr)
    return exit_code


def _wait(store: Store, run_id: int) -> None:
    try:
        _report(wait_for_run(lambda: run_progress(store, run_id)), run_id)
    except KeyboardInterrupt:
        print(f"stopped waiting; run {run_id} goes on (`evalsvc bulk status {run_id}`)", file=sys.stderr)


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    settings = bulk_settings(args, settings)
    check_budget(settings, args.max_cost, "--max-cost")
    store = Store.from_settings(settings)
    reset = reopen_run(store, args.run_id, retry_failed=args.retry_failed)
    if reset:
        print(f"run {args.run_id}: {reset} failed item(s) will be retried", file=sys.stderr)
    if args.max_cost is not None:
        set_max_cost(store, args.run_id, args.max_cost)
    if args.inline:
        scorer = build_item_scorer(settings, store, load_now=False)
        return _score_here(
            store,
            ShardContext.from_settings(settings, store, scorer),
            args.run_id,
            settings.bulk_shard_size,
            progress=args.wait,
        )
    queued = queue_run(store, ShardQueue.from_settings(settings), args.run_id, settings.bulk_shard_size)
    print(f"run {args.run_id}: {queued} shard job(s) queued on {settings.bulk_queue}", file=sys.stderr)
    if args.wait:
        _wait(store, args.run_id)
    print_json(run_state(store, args.run_id).to_dict() | {"queued_jobs": queued})
    return EXIT_OK


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    settings = bulk_settings(args, settings)
    store = Store.from_settings(settings)
    cancelled = cancel_run(store, lambda: ShardQueue.from_settings(settings), args.run_id)
    if cancelled.queue_problem is not None:
        message = cancelled.queue_problem.message
        print(f"warning: {message}; queued jobs will see the cancellation and stop", file=sys.stderr)
    print_json(run_state(store, args.run_id).to_dict() | {"removed_jobs": cancelled.removed_jobs})
    return EXIT_OK


def _status(args: argparse.Namespace, settings: Settings) -> int:
    """The SQL record, and what the queue holds for the run when Redis is reachable."""
    settings = bulk_settings(args, settings)
    summary = run_state(Store.from_settings(settings), args.run_id)
    try:
        jobs: dict[str, int] | None = ShardQueue.from_settings(settings).run_jobs(args.run_id)
    except QueueUnavailable:
        jobs = None  # a run scored in process, or Redis is down: SQL still answers
    print_json(summary.to_dict() | {"jobs": jobs})
    live = jobs is not None and (jobs["queued"] or jobs["started"] or jobs["scheduled"])
    if summary.status == "running" and summary.pending and jobs is not None and not live:
        print(f"no job of run {args.run_id} is queued: `evalsvc bulk resume {args.run_id}`", file=sys.stderr)
    return EXIT_OK


def _list(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise InvalidParameter(f"--limit must be at least 1, not {args.limit}")
    store = Store.from_settings(settings)
    with store.session() as session:
        tenant_id = tenant_id_by_name(session, args.tenant)
    runs = list_runs(store, tenant_id=tenant_id, limit=args.limit)
    print_json(runs)
    if not runs:
        print("no run recorded yet: `evalsvc bulk run MANIFEST --name NAME` makes one", file=sys.stderr)
    return EXIT_OK


def _results(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings)
    run_state(store, args.run_id)  # a missing run is an error, not an empty file
    output = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        after: int | None = 0
        header = True
        while after is not None:
            page = read_page(store, args.run_id, after=after)
            output.write(encode_rows(page.rows, args.format, header=header))
            header, after = False, page.next_after
    finally:
        if args.output:
            output.close()
    return EXIT_OK


def _report(progress: RunProgress, run_id: int) -> None:
    print(
        f"run {run_id}: {progress.status.value}, {progress.done} done, {progress.failed} failed, "
        f"{progress.pending} pending",
        file=sys.stderr,
    )
