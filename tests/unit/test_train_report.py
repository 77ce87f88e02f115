"""The training report's parts (ticks, smoothing, charts, the run table) and what the trainer records for it:
per-term loss curves, the learning rate per param group, time per step and samples per second, carried over
when a run resumes. The trainer runs as a stand-in (``tests/report_data.py``): its own recording code, no model."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from savflow.launch import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import report_data  # noqa: E402


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict:
    return report_data.trainer_metrics(str(tmp_path_factory.mktemp("fresh") / "exp"), steps=120)


# ---- what the trainer records -------------------------------------------------------------------------------------


def test_trainer_records_every_loss_term_and_lr_group(fresh: dict) -> None:
    assert [p[0] for p in fresh["loss_curve"]] == list(range(1, 121))  # the existing curve, as before
    assert list(fresh["loss_terms"]) == list(report_data.TERMS)
    for term, curve in fresh["loss_terms"].items():
        assert [p[0] for p in curve] == list(range(1, 121)), term
        assert all(math.isfinite(v) and v > 0 for _, v in curve), term
    # core_loss is the total the trainer returns, the same numbers as loss_curve
    assert [p[0] for p in fresh["loss_terms"]["core_loss"]] == [p[0] for p in fresh["loss_curve"]]
    assert [p[1] for p in fresh["loss_terms"]["core_loss"]] == pytest.approx([p[1] for p in fresh["loss_curve"]])
    assert sorted(fresh["lr_curves"]) == ["0", "1"]
    lr0 = dict(map(tuple, fresh["lr_curves"]["0"]))
    assert lr0[1] == pytest.approx(3e-6) and lr0[120] == pytest.approx(3e-6 * 0.5 * (1 + math.cos(math.pi * 119 / 120)))
    assert fresh["param_groups"] == [
        {"tensors": 2, "elements": 20, "weight_decay": 0.1, "modules": ["image_encoder"]},
        {"tensors": 2, "elements": 10, "weight_decay": 0.0, "modules": ["sam_mask_decoder"]}]


def test_trainer_records_speed(fresh: dict) -> None:
    assert fresh["seconds_per_step"] == pytest.approx(0.75)
    assert fresh["batch_size_per_rank"] == 2
    assert fresh["samples_per_second"] == pytest.approx(2 * 2 / 0.75)  # world size x batch / seconds per step
    curve = fresh["step_seconds_curve"]
    assert [p[0] for p in curve] == list(range(2, 121))
    assert {round(v, 6) for _, v in curve} == {0.75, 3.0}  # the steps after a checkpoint save took longer
    assert fresh["gpu_max_memory_bytes"] is None and fresh["gpu_name"] is None  # a CPU run
    json.dumps(fresh, allow_nan=False)  # train_metrics.json stays plain JSON


def test_resumed_run_carries_over_the_curves_up_to_its_checkpoint(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    first = report_data.trainer_metrics(str(exp), steps=100)  # published up to step 100 ...
    exp.mkdir()
    (exp / "train_metrics.json").write_text(json.dumps(first))
    resume = {"kind": "resume", "checkpoint": f"{exp}/checkpoints/000000080/checkpoint.pt", "step": 80, "epoch": 2}
    metrics = report_data.trainer_metrics(str(exp), steps=40, start_step=80, resume=resume)  # ... resumed at 80
    assert [p[0] for p in metrics["loss_curve"]] == list(range(1, 121))
    for curve in (*metrics["loss_terms"].values(), *metrics["lr_curves"].values()):
        assert [p[0] for p in curve] == list(range(1, 121))
    assert metrics["loss_terms"]["loss_dice"][:80] == first["loss_terms"]["loss_dice"][:80]
    assert [p[0] for p in metrics["step_seconds_curve"]] == [*range(2, 81), *range(82, 121)]
    assert metrics["steps_this_run"] == 40


# ---- chart parts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi", [(0.0123, 2.7), (1, 120), (3e-6, 5e-5), (0.5, 0.5), (-1.5, 4), (0, 0),
                                    (1e5, 3.2e6)])
def test_nice_ticks_cover_the_range_with_round_steps(lo: float, hi: float) -> None:
    ticks = report.nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and len(ticks) >= 3
    steps = {round(b - a, 15) for a, b in zip(ticks, ticks[1:])}
    assert len({f"{s:.6g}" for s in steps}) == 1
    mantissa = float(f"{next(iter(steps)):e}".split("e")[0])
    assert mantissa in (1, 2, 2.5, 5)
    labels = report.tick_labels(ticks)
    assert len(set(labels)) == len(labels), labels


def test_integer_ticks_for_steps() -> None:
    assert report.nice_ticks(1, 10, 6, integer=True) == [0, 2, 4, 6, 8, 10]
    assert report.nice_ticks(1, 120, 6, integer=True) == [0, 25, 50, 75, 100, 125]
    assert report.nice_ticks(1, 3, 6, integer=True) == [1, 2, 3]
    assert report.tick_labels([0, 25, 50, 75, 100, 125]) == ["0", "25", "50", "75", "100", "125"]
    assert report.tick_labels([0, 0.25, 0.5]) == ["0.00", "0.25", "0.50"]
    assert report.tick_labels([0, 2e-5, 4e-5, 6e-5]) == ["0", "2e-05", "4e-05", "6e-05"]


def test_ema_is_bias_corrected() -> None:
    assert report.ema([3.0, 1.0, 2.0], 0.0) == [3.0, 1.0, 2.0]
    assert report.ema([2.0] * 5, 0.9) == pytest.approx([2.0] * 5)  # no pull towards zero at the start
    smoothed = report.ema([0.0, 10.0] * 20, 0.9)
    assert 3 < smoothed[-1] < 7
    assert 0.6 <= report.smoothing_weight(5) <= report.smoothing_weight(2000) <= 0.95


def test_line_chart_has_axes_ticks_and_both_series() -> None:
    points = [[s, 1 / s] for s in range(1, 51)] + [[51, float("nan")]]
    svg = report.line_chart("c", "mask loss", points, y_label="loss")
    assert '<text class="axis-label x"' in svg and ">step</text>" in svg and ">loss</text>" in svg
    assert len(re.findall(r'class="tick x"', svg)) >= 3 and len(re.findall(r'class="tick y"', svg)) >= 3
    assert 'class="series raw"' in svg and 'class="series smoothed"' in svg
    assert "1 non-finite value left out" in svg
    assert len(re.search(r'class="series raw" points="([^"]*)"', svg).group(1).split()) == 50
    lr = report.line_chart("lr", "learning rate", [[1, 1e-4], [2, 1e-4]], y_label="learning rate", smooth=False)
    assert "smoothed" not in lr
    assert "no values recorded" in report.line_chart("e", "empty", [], y_label="loss")


def test_resume_text_is_words() -> None:
    assert report.resume_text({"kind": "fresh"}) == "started fresh (no checkpoint in the experiment)"
    assert report.resume_text({"kind": "resume", "checkpoint": "gs://b/e/checkpoints/000000080/checkpoint.pt",
                               "step": 80, "epoch": 2}) == (
        "resumed from the experiment's newest checkpoint, step 80 (epoch 2): "
        "gs://b/e/checkpoints/000000080/checkpoint.pt")
    assert "given checkpoint gs://x/c.pt" in report.resume_text({"kind": "resume", "explicit": True,
                                                                 "checkpoint": "gs://x/c.pt"})
    assert "up to step 40 (--overwrite)" in report.resume_text({"kind": "overwrite", "existing_step": 40})
    assert report.resume_text(None) == "not recorded"


# ---- the page -----------------------------------------------------------------------------------------------------


def test_page_shows_the_run_in_words(fresh: dict) -> None:
    exp = fresh["experiment_dir"]
    page = report.training_html(fresh, report_data.checkpoint_list(exp, [80, 120]))
    for chart_id in ("loss-core-loss", "loss-loss-mask", "loss-loss-dice", "loss-loss-iou", "loss-loss-class",
                     "lr-group-0", "lr-group-1", "seconds-per-step"):
        assert f'id="{chart_id}"' in page, chart_id
    assert '<table id="run">' in page and '<table id="checkpoints">' in page and '<table id="epochs">' in page
    assert "<td>2 process(es)</td>" in page and "<td>sam2.1_tiny128_sav_finetune</td>" in page
    assert "started fresh" in page and "120 (latest)" in page and "000000080/model.pt" in page
    assert "peak GPU memory" not in page  # a CPU run has none
    body = re.sub(r"<[^>]+>", " ", page)
    for python_value in ("None", "{'", "': ", "[[", "True", "False"):
        assert python_value not in body, python_value
    # self-contained: no script, no stylesheet or image from anywhere (the SVG namespace is a name, not a fetch)
    assert "<script" not in page and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)

    gpu = report.training_html({**fresh, "gpu_name": "NVIDIA H200", "gpu_max_memory_bytes": 37 * 2**30})
    assert "<th scope=row>peak GPU memory allocated (rank 0)</th><td>37.00 GiB</td>" in gpu
    assert "cpu (NVIDIA H200)" in gpu


def test_page_of_an_old_metrics_file() -> None:
    """train_metrics.json written before the per-term curves: the total loss chart, and no error."""
    old = {"status": "running", "config": "c", "device": "cuda:0", "world_size": 8, "steps": 3, "epochs_done": 1,
           "resume": {"kind": "fresh"}, "seconds_per_step": None, "final_loss": None,
           "loss_curve": [[1, 2.0], [2, 1.5], [3, 1.2]], "epochs": []}
    page = report.training_html(old)
    assert 'id="loss-total"' in page and "No checkpoint published yet" in page and "None" not in page


def test_numeric_metrics(fresh: dict) -> None:
    numbers = report.numeric_metrics({**fresh, "gpu_max_memory_bytes": 2**31})
    assert numbers["samples_per_second"] == pytest.approx(2 * 2 / 0.75)
    assert numbers["gpu_max_memory_gib"] == 2.0 and numbers["steps"] == 120.0
    assert "gpu_max_memory_gib" not in report.numeric_metrics(fresh)
