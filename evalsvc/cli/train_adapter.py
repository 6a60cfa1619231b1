"""`evalsvc train adapter --data FILE|--from-run RUN --out DIR`: LoRA fine-tuning of the judge.

Data: JSON-lines or CSV files (`--data`), and the assessments of judged runs in the store
(`--from-run`: a teacher run of the LLM judge, or any run judged in assessment mode). Every source is
checked whole first (each problem printed as FILE:LINE: message; nothing is
loaded or written while there is one). DIR receives the adapter (`--adapter DIR` loads it) and
training.json; checkpoints go to DIR/checkpoints until it is done. Ctrl-C saves a checkpoint of the
last finished step and exits 130; the same command with `--resume` continues from it. Prints a JSON
summary (stages, losses, tokens/s, peak memory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR, add_store_options, fail, print_json
from evalsvc.cli.train import positive_float, positive_int
from evalsvc.errors import TrainingDataInvalid
from evalsvc.settings import Settings

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
_TASKS = ("ser", "caption", "assessment")


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return number


def register(targets: argparse._SubParsersAction) -> None:
    parser = targets.add_parser(
        "adapter",
        help="LoRA fine-tuning of the judge on SER, caption and assessment data (staged or flat)",
        description="Train the EmpathyEval LoRA adapter (the shape --adapter loads) on the thinker, "
        "through the prompts and processor scoring uses: stages in order (--stage ser --stage caption "
        "--stage assessment, each starting from the last one's best adapter) or one flat mix (--flat).",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", action="append", type=Path, metavar="FILE", help="JSON lines or CSV (repeatable)"
    )
    data.add_argument(
        "--from-run",
        action="append",
        type=int,
        metavar="RUN",
        help="the assessments of a judged run (a teacher run), as assessment examples (repeatable)",
    )
    data.add_argument(
        "--validation", action="append", type=Path, metavar="FILE", help="validation data (repeatable)"
    )
    data.add_argument(
        "--validation-fraction",
        type=_fraction,
        help="share of each task held out for validation when no --validation is given (default 0.1)",
    )
    data.add_argument(
        "--data-root",
        action="append",
        type=Path,
        metavar="DIR",
        help="directory audio must lie under (repeatable; default EVALSVC_DATA_ROOTS, else each file's directory)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the adapter goes")
    order = parser.add_mutually_exclusive_group()
    order.add_argument(
        "--stage",
        action="append",
        choices=_TASKS,
        default=[],
        help="a stage, in order (repeatable; default: the tasks the data has, ser -> caption -> assessment)",
    )
    order.add_argument(
        "--flat", action="store_true", help="one stage mixing every task (the paper's Sft_Flat)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the interrupted training in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    knobs = parser.add_argument_group("training")
    knobs.add_argument("--learning-rate", type=positive_float, default=1e-4)
    knobs.add_argument("--epochs", type=positive_int, default=3, help="at most, per stage")
    knobs.add_argument("--batch-size", type=positive_int, default=1, help="examples per forward pass")
    knobs.add_argument(
        "--gradient-accumulation", type=positive_int, default=8, help="forward passes per step"
    )
    knobs.add_argument("--warmup-ratio", type=_fraction, default=0.03)
    knobs.add_argument("--max-grad-norm", type=positive_float, default=1.0)
    knobs.add_argument("--patience", type=positive_int, default=3, help="evaluations without improvement")
    knobs.add_argument(
        "--eval-every", type=positive_int, help="steps between evaluations (default: each epoch)"
    )
    knobs.add_argument("--checkpoint-every", type=positive_int, default=50, help="steps between checkpoints")
    knobs.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the data order and the LoRA init"
    )
    knobs.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="recompute activations in the backward pass (default: on; less memory, ~30%% more compute)",
    )
    model = parser.add_argument_group("model (override EVALSVC_* settings)")
    model.add_argument(
        "--model", help="hub id, local checkpoint directory, or 'tiny' (built-in random model)"
    )
    model.add_argument("--model-revision", help="hub revision (branch, tag or commit)")
    model.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    model.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="auto: bf16 on CUDA"
    )
    model.add_argument(
        "--attn-implementation",
        choices=["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"],
        help="auto (default): flash_attention_2 on CUDA when flash-attn is installed, else sdpa",
    )
    model.add_argument("--max-gpu-memory", help="weights budget per GPU, e.g. 70GiB")
    model.add_argument("--data-dir", help="where the tiny model lives (and the default SQLite database)")
    add_store_options(parser)
    parser.set_defaults(handler=run_adapter)


def run_adapter(args: argparse.Namespace, settings: Settings) -> int:
    from evalsvc.store import Store
    from evalsvc.training.finetune import (
        AdapterJob,
        DataFileSource,
        ExampleSource,
        RunAssessmentSource,
        TrainConfig,
        TrainingInterrupted,
        train_adapter,
    )

    def sources(paths: list[Path] | None) -> list[ExampleSource]:
        return [
            DataFileSource(path, args.data_root or settings.data_roots or [path.resolve().parent])
            for path in paths or []
        ]

    if not args.data and not args.from_run:
        return fail("invalid_parameter", "give training data: --data FILE or --from-run RUN", EXIT_USER_ERROR)
    runs: list[ExampleSource] = []
    if args.from_run:
        store = Store.from_settings(settings)
        runs = [
            RunAssessmentSource(store, run_id, args.data_root or settings.data_roots)
            for run_id in args.from_run
        ]
    if args.validation and args.validation_fraction is not None:
        return fail(
            "invalid_parameter", "give --validation or --validation-fraction, not both", EXIT_USER_ERROR
        )
    config = TrainConfig(
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation,
        warmup_ratio=args.warmup_ratio,
        max_grad_norm=args.max_grad_norm,
        patience=args.patience,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        gradient_checkpointing=args.gradient_checkpointing,
        validation_fraction=0.1 if args.validation_fraction is None else args.validation_fraction,
    )
    job = AdapterJob(
        sources=sources(args.data) + runs,
        out_dir=args.out,
        validation_sources=sources(args.validation),
        stages=args.stage,
        flat=args.flat,
        config=config,
        resume=args.resume,
        progress_bar=not args.no_progress,
    )
    try:
        summary = train_adapter(settings, job)
    except TrainingDataInvalid as error:
        for file, line, message in error.located:
            print(f"{file}:{line}: {message}", file=sys.stderr)
        return fail(error.code, error.summary, EXIT_USER_ERROR)
    except TrainingInterrupted as stop:
        print(
            f"interrupted: the adapter after step {stop.step} is saved in {stop.checkpoint}; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print_json(summary)
    return EXIT_OK
