"""benchmarks/gpu_session.py, the script a session lent a GPU runs, in its CPU dry run: a real ``savflow train``
under torchrun on generated staged videos (the tiny config, two steps) and the CPU part of bench_infer, so that
the script still runs when the commands it drives change. No figure here is a measurement."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_session  # noqa: E402


def test_dry_run_reports_each_part(tmp_path: Path) -> None:
    assert gpu_session.main(["--out", str(tmp_path), "--dry-run", "--train-steps", "2"]) == 0
    lines = (tmp_path / "gpu_figures.md").read_text().splitlines()
    assert lines[0].startswith("- ") and "torch" in lines[0] and "GPU: " in lines[0]
    [train] = [line for line in lines if line.startswith("- train")]
    assert "sam2.1_tiny128_sav_finetune (dry run, CPU): 2 steps" in train and "s per step (median)" in train
    [infer] = [line for line in lines if line.startswith("- infer")]
    assert "frames/s" in infer and "FAILED" not in infer


def test_a_failing_part_is_reported_and_the_other_still_runs(tmp_path: Path) -> None:
    """Training on zero videos fails in ``savflow train``; inference is still measured, and the status says so."""
    assert gpu_session.main(["--out", str(tmp_path), "--dry-run", "--train-steps", "0"]) == 1
    text = (tmp_path / "gpu_figures.md").read_text()
    assert "- train: FAILED: " in text and "- infer (dry run" in text
