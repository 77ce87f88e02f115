"""Known answers from the official SA-V evaluator (issue 13, point 5).

``tests/data/official_eval`` holds real SA-V ground truth (from ``sav_000001_manual.json``, 848x480) and perturbed
predictions (dilated, eroded, shifted, holed, emptied, a false blob, a greyscale 0/255 PNG, one missing prediction
for a skipped first frame, files the ground truth lacks), and the scores that facebookresearch/sam2's
``sav_dataset/sav_evaluator.py`` gave on them at full precision (README.md there says how they were made). Both
savflow's evaluator and the plain reference in ``tests/reference_jf.py`` must give the same per-object J and F,
and the same global scores, to 1e-6.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from savflow.evaluate.evaluator import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_jf  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "official_eval"
GT, PRED = DATA / "gt", DATA / "pred"
TOL = 1e-6
CASES = {"skip": ("official_skip.json", True), "noskip": ("official_noskip.json", False)}


def _official(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _assert_close(got: dict[str, dict[str, tuple[float, float]]], want: dict) -> None:
    assert {v: sorted(objs) for v, objs in got.items()} == {v: sorted(objs) for v, objs in want["videos"].items()}
    for video, objs in want["videos"].items():
        for obj, scores in objs.items():
            j, f = got[video][obj]
            assert j == pytest.approx(scores["J"], abs=TOL), (video, obj, "J")
            assert f == pytest.approx(scores["F"], abs=TOL), (video, obj, "F")
            assert (j + f) / 2 == pytest.approx((scores["J"] + scores["F"]) / 2, abs=TOL), (video, obj, "J&F")


def _pred_root(case: str, tmp_path: Path) -> Path:
    """``noskip`` was run on ``sav_000001`` alone: ``sav_000001_late`` has no prediction for its first frame,
    which the official evaluator only tolerates while it skips that frame."""
    if case == "skip":
        return PRED
    root = tmp_path / "pred"
    shutil.copytree(PRED / "sav_000001", root / "sav_000001")
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_savflow_evaluator_matches_official(case: str, tmp_path: Path) -> None:
    name, skip = CASES[case]
    want = _official(name)
    assert want["skip_first_and_last"] is skip
    videos = sorted(want["videos"])
    result = evaluate(str(GT), str(_pred_root(case, tmp_path)), videos, skip_first_last=skip, num_workers=1)
    assert not result.failures and not result.unscored_objects and not result.skipped_videos
    got: dict[str, dict[str, tuple[float, float]]] = {}
    for obj in result.objects:
        got.setdefault(obj.video, {})[obj.obj] = (obj.j, obj.f)
    _assert_close(got, want)
    scores = result.global_scores
    assert (scores.jf, scores.j, scores.f) == pytest.approx(
        (want["global"]["JF"], want["global"]["J"], want["global"]["F"]), abs=TOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_official(case: str, tmp_path: Path) -> None:
    name, skip = CASES[case]
    want = _official(name)
    got = reference_jf.evaluate(str(GT), str(_pred_root(case, tmp_path)), sorted(want["videos"]), skip)
    _assert_close(got, want)
    assert reference_jf.global_scores(got) == pytest.approx(
        (want["global"]["JF"], want["global"]["J"], want["global"]["F"]), abs=TOL)


def test_official_csv_is_the_rounded_full_precision_numbers() -> None:
    """The checked-in results.csv (what the official CLI wrote, 1 decimal) agrees with the JSON it came with."""
    want = _official("official_skip.json")
    rows = [[c.strip() for c in row] for row in csv.reader((DATA / "results.csv").read_text().splitlines())]
    assert rows[0] == ["sequence", "obj", "J&F", "J", "F"]
    g = want["global"]
    assert rows[1] == ["Global score", "", f"{g['JF']:.1f}", f"{g['J']:.1f}", f"{g['F']:.1f}"]
    expected = [[v, o, f"{(s['J'] + s['F']) / 2:.1f}", f"{s['J']:.1f}", f"{s['F']:.1f}"]
                for v, objs in sorted(want["videos"].items()) for o, s in sorted(objs.items())]
    assert rows[2:] == expected


def test_fixture_exercises_the_edge_cases() -> None:
    """What the fixture is meant to cover is still there (guards against regenerating it into something tamer)."""
    assert not (PRED / "sav_000001_late" / "004" / "00032.png").exists()  # skipped first frame, no prediction
    assert (PRED / "sav_000001" / "009").is_dir() and not (GT / "sav_000001" / "009").exists()
    assert Image.open(PRED / "sav_000001" / "001" / "00012.png").mode == "L"
    empty_gt = [p for p in GT.rglob("*.png") if not np.asarray(Image.open(p)).any()]
    assert len(empty_gt) >= 3


def test_savflow_evaluate_writes_the_official_results_csv_where_the_official_tool_does(tmp_path: Path) -> None:
    """``savflow evaluate`` puts the official tool's ``results.csv`` (same header, padding, one decimal, row
    order) into the predictions folder, byte for byte what the official CLI wrote there, and ``--metrics-json``
    copies metrics.json to a URI of the user's choice."""
    from savflow.pipelines.cli import main

    pred = tmp_path / "pred"
    shutil.copytree(PRED, pred)
    code = main(["evaluate", "--gt-root", str(GT), "--pred-root", str(pred), "--output", str(tmp_path / "out"),
                 "--metrics-json", str(tmp_path / "elsewhere" / "m.json"), "--num-workers", "1", "--quiet"])
    assert code == 0
    assert (pred / "results.csv").read_bytes() == (DATA / "results.csv").read_bytes()
    assert (tmp_path / "elsewhere" / "m.json").read_bytes() == (tmp_path / "out" / "metrics.json").read_bytes()
