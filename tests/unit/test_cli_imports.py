"""What each ``savflow`` command imports, each in a fresh interpreter: only what it uses, when it runs.

``savflow --help`` imports nothing but the standard library and the CLI modules; ``savflow COMMAND --help`` at
most PyYAML besides; ``compile``, ``submit`` and ``schedule``, run for real (the KFP API on a closed port, so
the handler gets through compiling the pipeline and connecting), import kfp but neither PyAV, OpenCV, numpy nor
torch; ``evaluate`` run on a tiny data set imports numpy and OpenCV but neither torch, PyAV nor kfp. How long
``--help`` takes is measured in ``benchmarks/bench_cli.py``, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from savflow.pipelines import cli

# Runs the CLI in this interpreter, then prints its exit status, its output and every module imported.
PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from savflow.pipelines.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(sys.argv[1:])
        except SystemExit as exc:
            code = exc.code
    print(json.dumps({"code": code, "output": out.getvalue(), "modules": sorted(sys.modules)}))
""")

COMMANDS = [name for module in cli.command_modules() for name in module.COMMANDS]
# what the pipeline steps' work imports: none of it belongs in a command that does not do that work
STEP_WORK = {"numpy", "cv2", "av", "torch", "torchvision", "sam2", "hydra", "omegaconf", "PIL", "pycocotools",
             "tqdm", "zlib_ng", "pandas"}
KFP = {"kfp", "kfp_server_api", "kubernetes"}


def _env() -> dict[str, str]:
    """This environment without a developer's KFP endpoint and credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES_")}


def _tops(modules: list[str]) -> set[str]:
    """Top-level packages, leaving out the private modules of compiled extensions (``_cython_*``, ...)."""
    return {m.split(".")[0] for m in modules if not m.startswith("_") and m != "cython_runtime"}


@pytest.fixture(scope="module")
def at_start() -> set[str]:
    """What the interpreter has imported before any code of ours (site, .pth hooks)."""
    code = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    return _tops(json.loads(proc.stdout))


def run_cli(*argv: str, cwd: Path | None = None) -> tuple[int, str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=300,
                          env=_env(), cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    return result["code"], result["output"], result["modules"]


def third_party(modules: list[str], at_start: set[str]) -> set[str]:
    return _tops(modules) - set(sys.stdlib_module_names) - at_start - {"savflow"}


def test_top_level_help_imports_only_the_cli_modules(at_start: set[str]) -> None:
    code, out, modules = run_cli("--help")
    assert code == 0
    assert all(name in out for name in COMMANDS), out
    assert third_party(modules, at_start) == set()
    cli_modules = set(cli.COMMAND_MODULES) | {"savflow.pipelines.cli"}
    packages = {name.rsplit(".", 1)[0] for name in cli_modules} | {"savflow"}
    assert {m for m in modules if m.startswith("savflow")} <= cli_modules | packages


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_imports_no_step_work(command: str, at_start: set[str]) -> None:
    code, out, modules = run_cli(command, "--help")
    assert code == 0 and f"usage: savflow {command}" in out, out
    assert third_party(modules, at_start) <= {"yaml"}


def test_listing_is_the_same_as_with_every_command_declared() -> None:
    """The commands not chosen are listed from ``COMMANDS`` alone; each module declares exactly those."""
    assert cli.build_parser(declare=()).format_help() == cli.build_parser().format_help()
    for module in cli.command_modules():
        sub = argparse.ArgumentParser().add_subparsers()
        module.register(sub)
        declared = {action.dest: action.help for action in sub._choices_actions}  # noqa: SLF001
        assert declared == module.COMMANDS, module.__name__


@pytest.mark.parametrize("argv, command", [(["stage"], "stage"), (["-v", "stage", "--help"], "stage"),
                                           (["--verbose", "submit", "x"], "submit"), (["nope"], "nope"),
                                           ([], None), (["--help"], None), (["-v"], None)])
def test_command_of(argv: list[str], command: str | None) -> None:
    assert cli.command_of(argv) == command


def test_compile_imports_kfp_but_no_step_work(tmp_path: Path, at_start: set[str]) -> None:
    code, out, modules = run_cli("compile", "--out-dir", str(tmp_path), "sav-finetune", "sav-evaluate")
    assert code == 0, out
    assert (tmp_path / "sav-finetune.yaml").is_file() and (tmp_path / "sav-evaluate.yaml").is_file()
    found = third_party(modules, at_start)
    assert "kfp" in found and not found & STEP_WORK, sorted(found & STEP_WORK)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [["submit", "sav-evaluate"],
                                  ["schedule", "create", "--name", "nightly", "--cron", "0 3 * * *"],
                                  ["schedule", "list"]])
def test_kfp_verbs_import_kfp_but_no_step_work(argv: list[str], at_start: set[str]) -> None:
    """Run to the point where the handler talks to the API (compiled and connected): nothing listens there."""
    code, out, modules = run_cli(*argv, "--host", f"http://127.0.0.1:{_closed_port()}")
    assert code == 1 and "cannot reach the KFP API" in out, out
    found = third_party(modules, at_start)
    assert "kfp" in found and not found & STEP_WORK, sorted(found & STEP_WORK)


@pytest.mark.parametrize("argv", [["runs", "list", "--state", "FAILED"], ["runs", "get", "r1"],
                                  ["runs", "metrics", "r1"], ["runs", "cancel", "r1"], ["runs", "retry", "r1"],
                                  ["schedule", "update", "rr1", "--cron", "0 4 * * *"]])
def test_runs_and_schedule_update_import_kfp_but_no_step_work(argv: list[str], at_start: set[str]) -> None:
    """As above; ``runs`` answers an unreachable API with exit 2, ``schedule`` with 1 like its other actions."""
    code, out, modules = run_cli(*argv, "--host", f"http://127.0.0.1:{_closed_port()}")
    assert code == (2 if argv[0] == "runs" else 1) and "cannot reach the KFP API" in out, out
    assert len([line for line in out.splitlines() if line.startswith("savflow ")]) == 1, out
    assert "Traceback" not in out, out
    found = third_party(modules, at_start)
    assert "kfp" in found and not found & STEP_WORK, sorted(found & STEP_WORK)


def test_launch_train_print_manifest_imports_no_step_work(at_start: set[str]) -> None:
    code, out, modules = run_cli("launch-train", "--name", "n", "--config", "c", "--train-frames", "f",
                                 "--train-annotations", "a", "--experiment-dir", "e", "--print-manifest")
    assert code == 0 and "kind: PyTorchJob" in out, out
    assert third_party(modules, at_start) <= {"yaml"}


def test_evaluate_imports_neither_torch_av_nor_kfp(tmp_path: Path, at_start: set[str]) -> None:
    import numpy as np

    from savflow.common.savformat import encode_object_png

    mask = np.zeros((16, 24), bool)
    mask[4:12, 6:18] = True
    for root in ("gt", "pred"):
        for frame in range(0, 16, 4):
            path = tmp_path / root / "v" / "000" / f"{frame:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_object_png(mask))
    code, out, modules = run_cli("evaluate", "--gt-root", str(tmp_path / "gt"), "--pred-root",
                                 str(tmp_path / "pred"), "--output", str(tmp_path / "out"), "--num-workers", "1",
                                 "--quiet")
    assert code == 0 and "J&F: 100.0" in out, out
    found = third_party(modules, at_start)
    assert "numpy" in found and not found & {"torch", "torchvision", "sam2", "hydra", "av", *KFP}, sorted(found)


def test_import_imports_neither_torch_av_hydra_nor_kfp(tmp_path: Path, at_start: set[str]) -> None:
    """A JPEG-frame dataset (no --mp4) is copied and its masks converted with PIL, numpy and pycocotools."""
    from savflow.common.demo_data import SyntheticSpec
    from savflow.importers.samples import write_davis

    write_davis(str(tmp_path / "src"), SyntheticSpec(num_videos=1, num_frames=4, height=16, width=24))
    code, out, modules = run_cli("import", "--format", "davis", "--source", str(tmp_path / "src"), "--dest",
                                 str(tmp_path / "out"), "--workers", "1")
    assert code == 0 and "1 videos imported" in out, out
    found = third_party(modules, at_start)
    assert "numpy" in found and not found & {"torch", "sam2", "hydra", "av", "cv2", *KFP}, sorted(found)


def test_validate_imports_neither_av_cv2_nor_kfp(tmp_path: Path, at_start: set[str]) -> None:
    """validate composes the training config (Hydra, sam2's resolvers: torch) but decodes no video."""
    from savflow.common.demo_data import SyntheticSpec, write_staged_train_split

    write_staged_train_split(str(tmp_path / "train"), SyntheticSpec(num_videos=1, num_frames=32, height=16, width=24))
    code, out, modules = run_cli("validate", "--train", str(tmp_path / "train"), "--config",
                                 "sam2.1_tiny128_sav_finetune")
    assert code == 0 and "1 valid" in out, out
    found = third_party(modules, at_start)
    assert "hydra" in found and not found & {"av", "cv2", *KFP}, sorted(found)
