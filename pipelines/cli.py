"""The ``savflow`` command: one subcommand per verb, each declared by the module that implements it.

Each module named in :data:`COMMAND_MODULES` has

* ``COMMANDS``: its subcommands' names and one-line help, in the order it declares them;
* ``register(subparsers)``, which adds those subcommands with their options and ``set_defaults(func=handler)``;
  a handler takes the parsed namespace and returns the exit status.

A command imports only what it uses, when it runs: the CLI modules import only the standard library at their top
level, ``register`` imports what the options need (their defaults and choices: light modules), and each handler
imports the work it does (PyAV, OpenCV, numpy, torch, kfp, ...). :func:`main` declares the options of the chosen
command's module only; the other commands are listed with their help and nothing else, so ``savflow --help``
imports no step's code at all. ``tests/unit/test_cli_imports.py`` checks what each command imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Container, Sequence
from types import ModuleType

COMMAND_MODULES = [
    "savflow.pipelines.local_cli",
    "savflow.importers.cli",
    "savflow.stage.cli",
    "savflow.train.cli",
    "savflow.launch.cli",
    "savflow.infer.cli",
    "savflow.evaluate.cli",
    "savflow.pipelines.verbs_cli",
    "savflow.pipelines.doctor_cli",
]


def command_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in COMMAND_MODULES]


def build_parser(declare: Container[str] | None = None) -> argparse.ArgumentParser:
    """The ``savflow`` parser, listing every command with its one-line help.

    ``declare`` names the commands whose options are declared (by their module's ``register``, which imports what
    those options need); any other command gets a bare parser that only lists it. None declares every command.
    """
    parser = argparse.ArgumentParser(
        prog="savflow",
        description="Fine-tune and evaluate SAM 2 on SA-V: the pipeline steps, and Kubeflow Pipelines verbs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        if declare is None or any(name in declare for name in module.COMMANDS):
            module.register(sub)
        else:
            for name, text in module.COMMANDS.items():
                sub.add_parser(name, help=text)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first argument that is not an option (the options before the
    subcommand, ``-v`` and ``-h``, take no value), or None."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    args = build_parser(declare={command} if command else ()).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
