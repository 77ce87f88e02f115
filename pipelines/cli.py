"""The ``savflow`` command: one subcommand per verb, each registered by the module that implements it.

Each module named in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its subcommand(s) with
``set_defaults(func=handler)``; a handler takes the parsed namespace and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "savflow.pipelines.local_cli",
    "savflow.stage.cli",
    "savflow.train.cli",
    "savflow.launch.cli",
    "savflow.infer.cli",
    "savflow.evaluate.cli",
    "savflow.pipelines.verbs_cli",
    "savflow.pipelines.doctor_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="savflow",
        description="Fine-tune and evaluate SAM 2 on SA-V: the pipeline steps, and Kubeflow Pipelines verbs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
