"""`evalsvc train heads --labels SET|--teacher RUN --out DIR`: fit the NS/WA/EU/ES heads on human
labels, or on the scores of a teacher run (the LLM judge's, or any judged run).

The configured model (and adapter) is the frozen backbone; its pooled features of every labelled
pair are cached on disk (EVALSVC_FEATURES_DIR) and reused by later fits. DIR receives heads.json,
heads.safetensors (load them with `--heads DIR`) and metrics.json (LCC/SRCC/KTAU/MSE per dimension
on the held-out split, beside the constant-mean baseline). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evalsvc.cli.common import (
    EXIT_OK,
    EXIT_USER_ERROR,
    add_model_options,
    add_store_options,
    fail,
    print_json,
)
from evalsvc.settings import Settings


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="fit the score heads on human labels, or train the LoRA adapter",
        description="Training of the judge itself.",
    )
    targets = parser.add_subparsers(dest="train_target", required=True, metavar="TARGET")
    heads = targets.add_parser(
        "heads",
        help="fit NS/WA/EU/ES regression heads on a label set or a teacher run (backbone frozen)",
        description="Fit the 4-output regression heads on the pooled features of the frozen backbone "
        "for the pairs of a label set (human ratings) or of a teacher run (its scores); write the "
        "heads and their held-out metrics to DIR.",
    )
    targets_from = heads.add_mutually_exclusive_group(required=True)
    targets_from.add_argument("--labels", metavar="SET", help="name of the label set")
    targets_from.add_argument(
        "--teacher", type=int, metavar="RUN", help="a judged run whose NS/WA/EU/ES scores are the targets"
    )
    heads.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the heads go")
    heads.add_argument(
        "--run", type=int, metavar="ID", help="with --labels: run whose items the labels' keys name"
    )
    heads.add_argument("--pooling", choices=["mean", "last"], default="mean")
    heads.add_argument(
        "--validation-fraction", type=float, default=1 / 9, help="held-out share (default 1/9: 8:1)"
    )
    heads.add_argument("--max-epochs", type=positive_int, default=500)
    heads.add_argument("--patience", type=positive_int, default=30, help="epochs without improvement")
    heads.add_argument("--learning-rate", type=positive_float, default=1e-2)
    heads.add_argument("--split-seed", type=int, default=0, help="seed of the split and the training")
    heads.add_argument("--batch-size", type=positive_int, default=8, help="pairs per feature forward pass")
    add_model_options(heads)
    add_store_options(heads)
    heads.set_defaults(handler=run_heads)
    from evalsvc.cli import train_adapter  # it takes this module's argument types

    train_adapter.register(targets)


def run_heads(args: argparse.Namespace, settings: Settings) -> int:
    from evalsvc.training.heads_fit import FitConfig
    from evalsvc.training.heads_job import HeadsJob, train_heads

    if args.teacher is not None and args.run is not None:
        return fail(
            "invalid_parameter", "--run goes with --labels; --teacher names the run itself", EXIT_USER_ERROR
        )
    fit = FitConfig(
        validation_fraction=args.validation_fraction,
        max_epochs=args.max_epochs,
        patience=args.patience,
        learning_rate=args.learning_rate,
        seed=args.split_seed,
    )
    job = HeadsJob(
        args.labels, args.out, args.run, args.pooling, args.batch_size, fit, teacher_run=args.teacher
    )
    print_json(train_heads(settings, job))
    return EXIT_OK
