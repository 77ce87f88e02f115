"""The evaluator on local folders: agreement with the per-frame reference in both layouts, the skip-first-last
rule on a hand-made video, strict mode, bad-input errors that name the file, results.csv/metrics.json and the
``savflow evaluate`` command."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from savflow.common.savformat import encode_object_png, encode_palette_png, objects_to_palette
from savflow.evaluate.evaluator import EvaluationError, evaluate, size_buckets_from_manual
from savflow.evaluate.results import metrics_dict, results_csv, write_results
from savflow.pipelines.cli import main as savflow_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_jf  # noqa: E402

H, W = 48, 72


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _blob(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx = rng.uniform(-5, H + 5), rng.uniform(-5, W + 5)  # often cut by the image border
    ry, rx = rng.uniform(2, 20, 2)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _random_video(rng: np.random.Generator, num_objects: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) of shape (objects, frames, H, W): moving blobs, some absent at first, predictions perturbed."""
    gt = np.zeros((num_objects, num_frames, H, W), bool)
    pred = np.zeros_like(gt)
    for k in range(num_objects):
        start = int(rng.integers(0, 3))
        base = _blob(rng)
        for t in range(num_frames):
            if t >= start and rng.random() > 0.1:
                gt[k, t] = np.roll(base, (t, 2 * t), (0, 1))
            roll = rng.integers(-3, 4, 2)
            pred[k, t] = np.roll(gt[k, t], roll, (0, 1)) if rng.random() > 0.15 else _blob(rng)
    return gt, pred


def _write_objects_layout(root: Path, video: str, masks: np.ndarray) -> None:
    for k in range(masks.shape[0]):
        for t in range(masks.shape[1]):
            _write(root / video / f"{k:03d}" / f"{4 * t:05d}.png", encode_object_png(masks[k, t]))


def _write_palette_layout(root: Path, video: str, masks: np.ndarray) -> None:
    for t in range(masks.shape[1]):
        label = objects_to_palette({k: masks[k, t] for k in range(masks.shape[0])})
        _write(root / video / f"{4 * t:05d}.png", encode_palette_png(label))


def _assert_same(result, reference: dict) -> None:
    got = {(o.video, o.obj): (o.j, o.f) for o in result.objects}
    want = {(v, o): s for v, objs in reference.items() for o, s in objs.items()}
    assert got.keys() == want.keys()
    for key in got:
        assert abs(got[key][0] - want[key][0]) < 1e-9 and abs(got[key][1] - want[key][1]) < 1e-9, key
    for a, b in zip(reference_jf.global_scores(reference),
                    (result.global_scores.jf, result.global_scores.j, result.global_scores.f)):
        assert abs(a - b) < 1e-9


@pytest.mark.parametrize("layout", ["objects", "palette"])
@pytest.mark.parametrize("skip", [True, False])
def test_agrees_with_reference(tmp_path: Path, layout: str, skip: bool) -> None:
    rng = np.random.default_rng(42)
    writer = _write_objects_layout if layout == "objects" else _write_palette_layout
    videos = ["vid_a", "vid_b", "vid_c"]
    for video in videos:
        gt, pred = _random_video(rng, num_objects=3, num_frames=7)
        writer(tmp_path / "gt", video, gt)
        writer(tmp_path / "pred", video, pred)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), skip_first_last=skip, num_workers=1)
    reference = reference_jf.evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), videos, skip)
    _assert_same(result, reference)
    assert result.videos == videos
    assert all(len(o.frames) <= (5 if skip else 7) for o in result.objects)


def test_recurring_empty_masks_are_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absent objects' frames are one empty PNG written again and again: decoded once per video, scored as the
    reference scores them; masks with pixels are decoded (and checked for one object) every time."""
    from savflow.evaluate import evaluator

    decoded: list[int] = []
    decode = evaluator.decode_mask
    monkeypatch.setattr(evaluator, "decode_mask", lambda data, **kw: decoded.append(len(data)) or decode(data, **kw))
    rng = np.random.default_rng(3)
    gt, pred = _random_video(rng, num_objects=2, num_frames=9)
    gt[0, :4] = False  # object 0 absent at first, and predicted absent there
    pred[0, :4] = False
    _write_objects_layout(tmp_path / "gt", "vid", gt)
    _write_objects_layout(tmp_path / "pred", "vid", pred)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), num_workers=1)
    _assert_same(result, reference_jf.evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), ["vid"], True))
    evaluated = np.concatenate([gt[:, 1:-1], pred[:, 1:-1]])
    empty = ~evaluated.any(axis=(2, 3))
    assert empty.sum() >= 6
    assert len(decoded) == (~empty).sum() + 1  # every mask with pixels, and the empty PNG once


def _square(shift: int = 0) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[10:30, 10 + shift:40 + shift] = True
    return mask


def test_skip_first_and_last_by_hand(tmp_path: Path) -> None:
    """Five frames; the prediction is empty on the first and last and perfect in between."""
    gt = np.stack([_square()] * 5)[None]
    pred = gt.copy()
    pred[0, 0] = pred[0, 4] = False
    _write_objects_layout(tmp_path / "gt", "v", gt)
    _write_objects_layout(tmp_path / "pred", "v", pred)
    skipped = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), num_workers=1)
    assert (skipped.global_scores.j, skipped.global_scores.f) == (100.0, 100.0)
    assert skipped.objects[0].frames == ("00004", "00008", "00012")
    kept = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), skip_first_last=False, num_workers=1)
    # an empty prediction scores J = 0 and F = 0 (precision 1, recall 0): 3 perfect frames of 5
    assert kept.global_scores.j == pytest.approx(60.0)
    assert kept.global_scores.f == pytest.approx(60.0)
    assert kept.global_scores.jf == pytest.approx(60.0)


def test_frames_before_first_appearance_do_not_count(tmp_path: Path) -> None:
    empty = np.zeros((H, W), bool)
    # frames: (skipped first), both empty (not counted), shifted by 10 of 30 columns, both empty (counts as 1), (last)
    gt = np.stack([_square(), empty, _square(), empty, _square()])[None]
    pred = np.stack([_square(), empty, _square(10), empty, _square()])[None]
    _write_objects_layout(tmp_path / "gt", "v", gt)
    _write_objects_layout(tmp_path / "pred", "v", pred)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), num_workers=1)
    obj = result.objects[0]
    assert obj.frames == ("00008", "00012")
    assert obj.frame_j == (pytest.approx(20 / 40), 1.0)  # 400 shared pixels of 800 in the union
    assert obj.j == pytest.approx(100 * (0.5 + 1) / 2)


def test_strict_mode_and_skipped_videos(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for video in ["a", "b"]:
        gt, pred = _random_video(rng, 1, 4)
        _write_objects_layout(tmp_path / "gt", video, gt)
        if video == "a":
            _write_objects_layout(tmp_path / "pred", video, pred)
    with pytest.raises(EvaluationError, match=r"pred/b: video b has no predictions \(strict mode\)"):
        evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), strict=True, num_workers=1)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), num_workers=1)
    assert result.skipped_videos == ["b"]
    assert {o.video for o in result.objects} == {"a"}
    assert metrics_dict(result)["skipped_videos"] == ["b"]
    # a prediction root holding a video the ground truth lacks fails strict mode too (as the official --strict)
    _write_objects_layout(tmp_path / "pred", "b", _random_video(rng, 1, 4)[1])
    _write_objects_layout(tmp_path / "pred", "zzz", _random_video(rng, 1, 4)[1])
    with pytest.raises(EvaluationError, match="video zzz is not in the ground truth"):
        evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), strict=True, num_workers=1)
    # ... unless a video list says which videos count
    assert evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), ["a", "b"], strict=True,
                    num_workers=1).videos == ["a", "b"]


def test_video_list(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for video in ["a", "b", "c"]:
        gt, pred = _random_video(rng, 1, 4)
        _write_objects_layout(tmp_path / "gt", video, gt)
        _write_objects_layout(tmp_path / "pred", video, pred)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), ["c", "a"], num_workers=1)
    assert [o.video for o in result.objects] == ["c", "a"]
    with pytest.raises(EvaluationError, match="video nope has no ground truth"):
        evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), ["a", "nope"], num_workers=1)


def _one_video(tmp_path: Path) -> tuple[Path, Path]:
    gt = np.stack([_square()] * 4)[None]
    _write_objects_layout(tmp_path / "gt", "v", gt)
    _write_objects_layout(tmp_path / "pred", "v", gt)
    return tmp_path / "gt", tmp_path / "pred"


def test_missing_prediction_png_names_the_file(tmp_path: Path) -> None:
    gt, pred = _one_video(tmp_path)
    (pred / "v" / "000" / "00008.png").unlink()
    (pred / "v" / "000" / "00000.png").unlink()  # the first frame is skipped, so its absence is fine
    with pytest.raises(EvaluationError, match=f"{pred}/v/000/00008.png: prediction not found"):
        evaluate(str(gt), str(pred), num_workers=1)


def test_shape_mismatch_names_both_files(tmp_path: Path) -> None:
    gt, pred = _one_video(tmp_path)
    _write(pred / "v" / "000" / "00004.png", encode_object_png(np.zeros((H, W + 1), bool)))
    with pytest.raises(EvaluationError) as info:
        evaluate(str(gt), str(pred), num_workers=1)
    assert f"{pred}/v/000/00004.png: shape {H}x{W + 1} does not match the ground truth {gt}/v/000/00004.png" \
        in str(info.value)


def test_png_holding_several_objects_is_rejected(tmp_path: Path) -> None:
    gt, pred = _one_video(tmp_path)
    label = _square().astype(np.uint8)
    label[12, 12] = 2
    _write(pred / "v" / "000" / "00004.png", encode_palette_png(label))
    with pytest.raises(EvaluationError, match=f"{pred}/v/000/00004.png: holds more than one object"):
        evaluate(str(gt), str(pred), num_workers=1)


def test_unreadable_png_names_the_file(tmp_path: Path) -> None:
    gt, pred = _one_video(tmp_path)
    _write(pred / "v" / "000" / "00004.png", b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(EvaluationError, match=f"{pred}/v/000/00004.png"):
        evaluate(str(gt), str(pred), num_workers=1)


def test_any_two_values_are_one_object(tmp_path: Path) -> None:
    """As the official check: at most two distinct values, anything non-zero is the object."""
    gt, pred = _one_video(tmp_path)
    _write(pred / "v" / "000" / "00004.png", encode_palette_png(_square().astype(np.uint8) * 255))
    assert evaluate(str(gt), str(pred), num_workers=1).global_scores.jf == 100.0


def test_object_never_in_ground_truth_is_listed_not_scored(tmp_path: Path) -> None:
    gt = np.stack([np.stack([_square()] * 4), np.zeros((4, H, W), bool)])
    _write_objects_layout(tmp_path / "gt", "v", gt)
    _write_objects_layout(tmp_path / "pred", "v", gt)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), num_workers=1)
    assert [o.obj for o in result.objects] == ["000"]
    assert [(u.obj, u.reason) for u in result.unscored_objects] == \
        [("001", "empty in the ground truth on all 2 evaluated frames")]


def test_wrong_root_level_is_explained(tmp_path: Path) -> None:
    gt, pred = _one_video(tmp_path / "Annotations_6fps")
    with pytest.raises(EvaluationError, match="nested too deep"):
        evaluate(str(tmp_path), str(pred), num_workers=1)
    with pytest.raises(EvaluationError, match="no ground-truth masks found"):
        evaluate(str(tmp_path / "nothing"), str(pred), num_workers=1)


def test_prediction_in_the_other_layout_is_missing(tmp_path: Path) -> None:
    gt, pred = _one_video(tmp_path)
    _write_palette_layout(tmp_path / "pal", "v", np.stack([_square()] * 4)[None])
    with pytest.raises(EvaluationError, match="ground truth's objects layout"):
        evaluate(str(gt), str(tmp_path / "pal"), num_workers=1)


def test_results_csv_and_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for video in ["a", "b"]:
        gt, pred = _random_video(rng, 2, 5)
        _write_objects_layout(tmp_path / "gt", video, gt)
        _write_objects_layout(tmp_path / "pred", video, pred)
    result = evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), num_workers=1,
                      size_buckets={"a": {"000": "small", 1: "large"}, "b": {"000": "small"}})
    rows = list(csv.reader(io.StringIO(results_csv(result))))
    assert rows[0] == ["sequence", "obj", "J&F", "J", "F"]
    total = result.global_scores
    assert rows[1][:2] == ["Global score", ""]
    assert [float(v) for v in rows[1][2:]] == [total.jf, total.j, total.f]  # full precision, exact round trip
    assert [r[:2] for r in rows[2:]] == [[o.video, o.obj] for o in result.objects]
    for row, obj in zip(rows[2:], result.objects):
        assert [float(v) for v in row[2:]] == [obj.jf, obj.j, obj.f]
    uris = write_results(result, str(tmp_path / "out"))
    metrics = json.loads(Path(uris["json"]).read_text())
    assert metrics["J&F"] == total.jf and metrics["num_objects"] == len(result.objects)
    assert metrics["num_object_frames"] == result.num_frames
    assert set(metrics["per_video"]) == {"a", "b"}
    assert metrics["per_bucket"]["small"]["objects"] == 2
    small = [o for o in result.objects if o.bucket == "small"]
    assert metrics["per_bucket"]["small"]["J"] == pytest.approx(sum(o.j for o in small) / 2)
    assert Path(uris["csv"]).read_text() == results_csv(result)


def test_size_buckets_from_manual_json(tmp_path: Path, sample_manual_json: Path) -> None:
    buckets = size_buckets_from_manual([str(sample_manual_json)])
    doc = json.loads(sample_manual_json.read_text())
    assert buckets == {doc["video_id"]: {f"{i:03d}": b for i, b in zip(doc["masklet_id"],
                                                                          doc["masklet_size_bucket"])}}


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, pred = _one_video(tmp_path)
    _write_objects_layout(gt, "w", np.stack([_square()] * 4)[None])
    (tmp_path / "list.txt").write_text("v\n")
    code = savflow_main(["evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--output",
                         str(tmp_path / "out"), "--video-list", str(tmp_path / "list.txt"), "--strict",
                         "--num-workers", "1", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Global score: J&F: 100.0 J: 100.0 F: 100.0" in out
    assert (tmp_path / "out" / "results.csv").read_text().splitlines()[1] == "Global score,,100.0,100.0,100.0"
    code = savflow_main(["evaluate", "--gt-root", str(gt), "--pred-root", str(pred), "--output",
                         str(tmp_path / "out2"), "--strict", "--num-workers", "1", "--quiet"])
    assert code == 2  # bad input (issue 15, point 6)
    assert "video w has no predictions (strict mode)" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
