"""One set of conventions on every command (issue 15, point 6): the same concept has the same flag (``--video-list``,
``--workers``, ``--device`` with one set of choices), every ``--help`` ends with examples that parse, and bad
input is exit status 2 with one ``savflow COMMAND: error: ...`` line on stderr and no traceback."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from savflow.common.devices import DEVICES
from savflow.pipelines import cli

ALL = [name for module in cli.command_modules() for name in module.COMMANDS]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return cli.build_parser()


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options of a command and of its subcommands (``schedule create``, ``runs list``, ...)."""
    out = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                out += _options(child)
        elif action.option_strings:
            out.append(action)
    return out


@pytest.mark.parametrize("name", ALL)
def test_the_same_concept_has_the_same_flag(parser: argparse.ArgumentParser, name: str) -> None:
    for action in _options(_commands(parser)[name]):
        flags = set(action.option_strings)
        if flags & {"--file-list", "--videos", "--video-file"}:
            assert "--video-list" in flags, (name, action.option_strings)
        if "--num-workers" in flags:
            assert "--workers" in flags, (name, action.option_strings)
        if "--device" in flags:
            assert tuple(action.choices) == DEVICES, (name, action.choices)
        if "--workers" in flags:
            assert action.option_strings[-1] == "--workers", "commands written for a command use the common name"


@pytest.mark.parametrize("name", ALL)
def test_help_ends_with_examples_that_parse(parser: argparse.ArgumentParser, name: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser.parse_args([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    examples = text[text.index("\nexample:\n") + len("\nexample:\n"):].strip().splitlines()
    assert examples, text
    for line in examples:
        argv = shlex.split(line.split("  #", 1)[0])
        assert argv[:2] == ["savflow", name], line
        parser.parse_args(argv[1:])  # exits 2 (failing the test) on an option the command does not have


BAD_INPUT = {
    "stage": ["--source", "{missing}", "--dest", "{tmp}/out"],
    "materialize": ["--staged", "{missing}", "--local", "{tmp}/local"],
    "import": ["--format", "davis", "--source", "{missing}", "--dest", "{tmp}/out"],
    "validate": ["--train", "{missing}"],
    "plan-shards": ["--frames", "{missing}", "--masks", "{missing}", "--num-shards", "2"],
    "infer": ["--checkpoint", "{missing}/w.pt", "--model-config", "sam2.1_hiera_tiny128", "--frames", "{missing}",
              "--masks", "{missing}", "--output", "{tmp}/pred", "--device", "cpu"],
    "evaluate": ["--gt-root", "{missing}", "--pred-root", "{missing}", "--output", "{tmp}/eval"],
    "train": ["--config", "sam2.1_tiny128_sav_finetune", "--train-frames", "{missing}/JPEGImages_24fps",
              "--train-annotations", "{missing}/annotations", "--experiment-dir", "{tmp}/exp"],
    "doctor": ["--params-file", "{missing}/params.yaml", "--no-kfp"],
    "run-local": ["--params-file", "{missing}/params.yaml"],
    "submit": ["sav-evaluate", "--param", "no_such_parameter=1", "--host", "http://127.0.0.1:9"],
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_is_status_2_and_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in BAD_INPUT[name]]
    assert cli.main([name, *argv]) == 2
    err = capsys.readouterr().err
    assert f"savflow {name}: error: " in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [["doctor", "--no-kfp", "--node-selector", "gpu"],
                                  ["launch-train", "--name", "ft", "--env", "=1"]])
def test_key_value_options_refuse_text_without_a_key_and_an_equals_sign(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"savflow {argv[0]}: error: argument {argv[-2]}: expected KEY=VALUE, got {argv[-1]!r}" in err, err


def test_version_names_the_release_and_its_default_image(capsys: pytest.CaptureFixture[str]) -> None:
    from savflow import __version__
    from savflow.common.deployment import DEFAULT_IMAGE

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"savflow {__version__} (image {DEFAULT_IMAGE})\n"
