"""The evaluator reading ground truth and predictions from storage (a local folder and the GCS emulator) with a
process pool, and ``savflow evaluate`` writing its results back there; numbers checked against the per-frame
reference run on a local copy."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from savflow.common import demo_data, storage
from savflow.common.savformat import MASKS_DIR, decode_object_png, encode_object_png
from savflow.evaluate.evaluator import evaluate
from savflow.pipelines.cli import main as savflow_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_jf  # noqa: E402

SPEC = demo_data.SyntheticSpec(num_videos=2, num_frames=20, height=64, width=96, num_objects=2, seed=3)


def _perturbed_predictions(gt_root: str, pred_root: str) -> None:
    """Each ground-truth PNG shifted by a frame-dependent offset (and one object dropped on one frame)."""
    for i, name in enumerate(storage.list_prefix(gt_root)):
        mask = decode_object_png(storage.read_bytes(storage.join(gt_root, name)))
        pred = np.roll(mask, (i % 3 - 1, i % 5 - 2), (0, 1)) if i != 7 else np.zeros_like(mask)
        storage.write_bytes(storage.join(pred_root, name), encode_object_png(pred))


def test_evaluate_from_storage_matches_reference(store_root: str, tmp_path: Path) -> None:
    videos = demo_data.write_val_split(storage.join(store_root, "val"), SPEC)
    gt_root = storage.join(store_root, "val", MASKS_DIR)
    pred_root = storage.join(store_root, "pred")
    _perturbed_predictions(gt_root, pred_root)

    result = evaluate(gt_root, pred_root, num_workers=2, strict=True)

    storage.download_tree(gt_root, tmp_path / "gt")
    storage.download_tree(pred_root, tmp_path / "pred")
    reference = reference_jf.evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), videos)
    got = {(o.video, o.obj): (o.j, o.f) for o in result.objects}
    want = {(v, o): s for v, objs in reference.items() for o, s in objs.items()}
    assert got.keys() == want.keys() and len(got) == SPEC.num_videos * SPEC.num_objects
    for key, (j, f) in got.items():
        assert abs(j - want[key][0]) < 1e-9 and abs(f - want[key][1]) < 1e-9
    assert abs(result.global_scores.jf - reference_jf.global_scores(reference)[0]) < 1e-9
    assert 0 < result.global_scores.jf < 100


def test_cli_writes_results_to_storage(store_root: str) -> None:
    demo_data.write_val_split(storage.join(store_root, "val"), SPEC)
    gt_root = storage.join(store_root, "val", MASKS_DIR)
    out = storage.join(store_root, "eval")
    code = savflow_main(["evaluate", "--gt-root", gt_root, "--pred-root", gt_root, "--output", out,
                         "--video-list", storage.join(store_root, "val", "video_list.txt"),
                         "--num-workers", "2", "--quiet"])
    assert code == 0
    rows = list(csv.reader(io.StringIO(storage.read_text(storage.join(out, "results.csv")))))
    assert rows[0] == ["sequence", "obj", "J&F", "J", "F"]
    assert rows[1] == ["Global score", "", "100.0", "100.0", "100.0"]
    assert len(rows) == 2 + SPEC.num_videos * SPEC.num_objects
    metrics = json.loads(storage.read_text(storage.join(out, "metrics.json")))
    assert metrics["J&F"] == 100.0
    assert metrics["num_videos"] == SPEC.num_videos
    assert metrics["num_object_frames"] == sum(o["frames"] for o in metrics["per_object"]) > 0
