"""The ``savflow`` command: one subcommand per verb, each declared by the module that implements it.

Each module named in :data:`COMMAND_MODULES` has

* ``COMMANDS``: its subcommands' names and one-line help, in the order it declares them;
* ``EXAMPLES``: for each subcommand, example command lines, shown at the end of its ``--help`` (and parsed by
  ``tests/unit/test_cli_conventions.py``, so that they stay valid);
* ``register(subparsers)``, which adds those subcommands with their options and ``set_defaults(func=handler)``;
  a handler takes the parsed namespace and returns the exit status: 0 done, 1 finished with failed units (videos,
  tasks), 2 bad usage or input (errors go to stderr as one ``savflow COMMAND: error: ...`` line).

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


class ExampleFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual, prints an epilog of examples (``example:`` first) line by line as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _add_examples(sub: argparse._SubParsersAction, module: ModuleType) -> None:
    """Each of ``module``'s commands ends its help with its examples."""
    for name in module.COMMANDS:
        parser = sub.choices[name]
        parser.epilog = "example:\n" + "".join(f"  {line}\n" for line in module.EXAMPLES[name])
        if parser.formatter_class is argparse.HelpFormatter:
            parser.formatter_class = ExampleFormatter


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
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the savflow release and the container image it runs by default, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        if declare is None or any(name in declare for name in module.COMMANDS):
            module.register(sub)
            _add_examples(sub, module)
        else:
            for name, text in module.COMMANDS.items():
                sub.add_parser(name, help=text)
    return parser


class _Version(argparse.Action):
    """``--version``: looks the image up only when asked, so that ``savflow --help`` imports no more than the CLI."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from savflow import __version__
        from savflow.common.deployment import DEFAULT_IMAGE

        print(f"savflow {__version__} (image {DEFAULT_IMAGE})")
        parser.exit()


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
