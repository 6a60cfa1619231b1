"""The `evalsvc` command line: one sub-command module per area, assembled here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evalsvc import __version__
from evalsvc.cli import build, bulk, db, export, keys, labels, report, score, serve, tiny, train, worker
from evalsvc.cli.common import run_command

COMMAND_MODULES = (score, tiny, db, serve, keys, bulk, worker, labels, report, train, build, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalsvc",
        description="EmpathyEval as a service: judge spoken empathetic dialogue (NS, WA, EU, ES).",
    )
    parser.add_argument("--version", action="version", version=f"evalsvc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
