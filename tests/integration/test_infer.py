"""The inference step end to end on the GCS emulator, with the tiny SAM 2.1 config (random weights) on CPU.

Random weights give meaningless masks, which is fine here: every test compares against sam2's predictor called
directly in the test (sam2's ``tools/vos_inference.py`` semantics written out plainly), or checks bookkeeping.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from savflow.common import markers, savformat, storage
from savflow.common.demo_data import SyntheticSpec, write_val_split
from savflow.infer.infer import infer
from savflow.pipelines.cli import main as savflow_main

TINY = "sam2.1_hiera_tiny128"
FRAMES, MASKS = savformat.FRAMES_DIR, savformat.MASKS_DIR
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bucket(gcs_emulator: str) -> str:
    name = f"infer-{uuid.uuid4().hex[:10]}"
    storage.gcs_client().create_bucket(name)
    return f"gs://{name}"


@pytest.fixture(scope="module")
def checkpoint(bucket: str, tmp_path_factory) -> tuple[str, Path]:
    """A random-init tiny model saved the way our training step saves it; (bucket URI, local copy)."""
    from sam2.build_sam import build_sam2

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    torch.manual_seed(0)
    model = build_sam2(TINY, None, device="cpu")
    local = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": model.state_dict()}, local)
    uri = f"{bucket}/checkpoints/tiny.pt"
    storage.upload_file(local, uri)
    return uri, local


@pytest.fixture(scope="module")
def split(bucket: str, tmp_path_factory) -> tuple[str, Path, list[str]]:
    """Four 16-frame videos with two objects each: (bucket split root, local copy, video ids)."""
    local = tmp_path_factory.mktemp("split")
    videos = write_val_split(str(local), SyntheticSpec(num_videos=4, num_frames=16, num_objects=2, seed=5))
    root = f"{bucket}/val"
    storage.upload_tree(local, root)
    return root, local, videos


@pytest.fixture(scope="module")
def later_split(bucket: str, tmp_path_factory) -> tuple[str, Path, str]:
    """One video whose objects 001 and 002 are absent (empty masks) on the annotated frames 0 and 4."""
    local = tmp_path_factory.mktemp("later")
    [video] = write_val_split(str(local), SyntheticSpec(num_videos=1, num_frames=16, num_objects=3, seed=9))
    empty = savformat.encode_object_png(np.zeros((128, 128), dtype=bool))
    for obj in (1, 2):
        for frame in (0, 4):
            (local / savformat.object_mask_path(video, obj, frame)).write_bytes(empty)
    root = f"{bucket}/later"
    storage.upload_tree(local, root)
    return root, local, video


def reference_masks(ckpt: Path, split_dir: Path, video: str, mode: str) -> dict[tuple[int, int], np.ndarray]:
    """Masks straight from sam2's predictor: ``mode`` is first (prompt all objects on the first annotated
    frame), all (on every annotated frame) or later (one state per object, prompted where it first appears)."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(TINY, str(ckpt), device="cpu", apply_postprocessing=False,
                                           hydra_overrides_extra=["++model.non_overlap_masks=false"])
    mask_dir = split_dir / MASKS / video
    objects = sorted(int(d) for d in os.listdir(mask_dir))
    annotated = sorted(int(p.stem) for p in (mask_dir / f"{objects[0]:03d}").glob("*.png"))

    def load(obj: int, frame: int) -> np.ndarray:
        return savformat.decode_object_png((mask_dir / f"{obj:03d}" / f"{frame:05d}.png").read_bytes())

    out: dict[tuple[int, int], np.ndarray] = {}
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(split_dir / FRAMES / video))
        if mode in ("first", "all"):
            for frame in annotated if mode == "all" else annotated[:1]:
                for obj in objects:
                    predictor.add_new_mask(state, frame, obj, load(obj, frame))
            for idx, obj_ids, logits in predictor.propagate_in_video(state):
                for i, obj in enumerate(obj_ids):
                    out[obj, idx] = (logits[i, 0] > 0).numpy()
        else:
            for obj in objects:
                visible = [f for f in annotated if load(obj, f).any()]
                if not visible:
                    continue
                predictor.reset_state(state)
                predictor.add_new_mask(state, visible[0], obj, load(obj, visible[0]))
                for idx, _, logits in predictor.propagate_in_video(state, start_frame_idx=visible[0]):
                    out[obj, idx] = (logits[0, 0] > 0).numpy()
    empty = np.zeros((128, 128), dtype=bool)
    return {(obj, f): out.get((obj, f), empty) for obj in objects for f in annotated}


def predicted_masks(pred_root: str, video: str) -> dict[tuple[int, int], np.ndarray]:
    names = storage.list_prefix(storage.join(pred_root, video))
    return {(int(n.split("/")[0]), int(n.split("/")[1][:-4])):
            savformat.decode_object_png(storage.read_bytes(storage.join(pred_root, video, n))) for n in names}


def assert_same_masks(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"object/frame {key}")
    assert any(m.any() for m in got.values())


def generations(prefix: str) -> dict[str, int]:
    bucket, name = storage.split_gcs(prefix)
    return {b.name: b.generation for b in storage.gcs_client().list_blobs(bucket, prefix=name + "/")}


@pytest.fixture(scope="module")
def fanned_out(split, checkpoint, bucket) -> tuple[str, list[list[str]]]:
    """``savflow plan-shards`` into 2 shards, then ``savflow infer`` once per shard into one prediction root."""
    root, _, _ = split
    plan_uri, pred = f"{bucket}/plan.json", f"{bucket}/pred"
    roots = ["--frames", f"{root}/{FRAMES}", "--masks", f"{root}/{MASKS}"]
    assert savflow_main(["plan-shards", *roots, "--num-shards", "2", "--output", plan_uri]) == 0
    plan = json.loads(storage.read_text(plan_uri))
    for k in range(2):
        assert savflow_main(["infer", "--checkpoint", checkpoint[0], "--model-config", TINY, *roots,
                             "--output", pred, "--shard", str(k), "--num-shards", "2", "--device", "cpu"]) == 0
    return pred, plan["shards"]


def test_shards_cover_the_split_and_match_the_plan(fanned_out, split):
    pred, shards = fanned_out
    _, _, videos = split
    assert sorted(v for shard in shards for v in shard) == videos and all(shards)
    reports = [json.loads(storage.read_text(storage.join(pred, "_reports", n)))
               for n in storage.list_prefix(storage.join(pred, "_reports"))]
    assert sorted(r["total"] for r in reports) == sorted(len(s) for s in shards)
    assert all(r["done"] == r["total"] and r["failed"] == 0 for r in reports)
    assert markers.done_units(pred) == set(videos)


def test_outputs_are_the_direct_predictor_masks_in_the_evaluator_layout(fanned_out, split, checkpoint):
    pred, _ = fanned_out
    root, local, videos = split
    gt = {n for n in storage.list_prefix(f"{root}/{MASKS}")}
    written = {n for n in storage.list_prefix(pred) if not n.startswith(("_done/", "_reports/"))}
    assert written == gt
    for video in videos:
        assert_same_masks(predicted_masks(pred, video), reference_masks(checkpoint[1], local, video, "first"))


def test_evaluator_reads_the_predictions(fanned_out, split):
    from savflow.evaluate.evaluator import evaluate

    pred, _ = fanned_out
    root, _, videos = split
    result = evaluate(f"{root}/{MASKS}", pred, strict=True, num_workers=1)
    assert result.videos == videos and len(result.objects) == 2 * len(videos)
    scores = result.global_scores
    assert 0.0 <= scores.jf <= 100.0 and scores.objects == 2 * len(videos) and not result.skipped_videos


@pytest.mark.parametrize("mode", ["first", "all", "later"])
def test_prompt_modes_match_the_direct_predictor(mode, later_split, checkpoint, bucket):
    root, local, video = later_split
    pred = f"{bucket}/pred-{mode}"
    result = infer(checkpoint[0], TINY, f"{root}/{FRAMES}", f"{root}/{MASKS}", pred, device="cpu",
                   use_all_masks=mode == "all", track_later_objects=mode == "later")
    assert result.exit_code == 0 and result.report.done == 1
    got = predicted_masks(pred, video)
    assert_same_masks(got, reference_masks(checkpoint[1], local, video, mode))
    if mode == "later":
        assert not any(got[obj, f].any() for obj in (1, 2) for f in (0, 4))


def test_broken_videos_are_reported_and_a_rerun_resumes(split, checkpoint, bucket):
    _, local, videos = split
    root, pred = f"{bucket}/broken", f"{bucket}/pred-broken"
    storage.upload_tree(local, root)
    good, bad_jpeg, no_masks = videos[:2], videos[2], videos[3]
    jpeg_uri = f"{root}/{savformat.frames_path(bad_jpeg, 5)}"
    storage.write_bytes(jpeg_uri, b"\xff\xd8 this is not a JPEG")
    storage.delete_prefix(f"{root}/{MASKS}/{no_masks}")
    args = (checkpoint[0], TINY, f"{root}/{FRAMES}", f"{root}/{MASKS}", pred)

    first = infer(*args, device="cpu")
    assert first.exit_code == 1 and first.report.done == 2
    failed = {f.video: f for f in first.report.failures}
    assert sorted(failed) == [bad_jpeg, no_masks]
    assert failed[bad_jpeg].stage == "segment" and "00005.jpg" in failed[bad_jpeg].reason
    assert failed[no_masks].stage == "fetch" and "masks" in failed[no_masks].reason
    report = json.loads(storage.read_text(first.report_uri))
    assert report["failed"] == 2 and {f["video"] for f in report["failures"]} == {bad_jpeg, no_masks}
    assert markers.done_units(pred) == set(good)
    assert not storage.list_prefix(f"{pred}/{bad_jpeg}")
    before = generations(pred)

    again = infer(*args, device="cpu", max_failures=2)
    assert again.exit_code == 0
    assert (again.report.skipped, again.report.done, len(again.report.failures)) == (2, 0, 2)
    after = generations(pred)
    assert {n: g for n, g in after.items() if "/_reports/" not in n} == \
        {n: g for n, g in before.items() if "/_reports/" not in n}

    storage.upload_file(local / savformat.frames_path(bad_jpeg, 5), jpeg_uri)
    fixed = infer(*args, device="cpu")
    assert (fixed.report.skipped, fixed.report.done, len(fixed.report.failures)) == (2, 1, 1)
    assert markers.done_units(pred) == {*good, bad_jpeg}


def test_staged_tar_split_is_materialized_and_checked(fanned_out, split, checkpoint, bucket):
    """A split written by ``savflow stage`` in the tar layout has no frame folders to list or copy: videos are
    counted from their markers and fetched through ``materialize``; a video without a marker fails."""
    from savflow.stage.stage import stage

    pred_raw, _ = fanned_out
    _, local, videos = split
    staged = f"{bucket}/staged-tar"
    stage(str(local), staged, videos=videos[:3], layout="tar", workers=2, progress=False)
    assert not storage.list_prefix(f"{staged}/{FRAMES}")
    markers.clear_marker(staged, videos[2])
    frames, masks = f"{staged}/{FRAMES}", f"{staged}/{MASKS}"

    storage.write_text(f"{staged}-list.txt", savformat.format_video_list(videos[:3]))
    assert savflow_main(["plan-shards", "--frames", frames, "--masks", masks, "--num-shards", "2",
                         "--video-list", f"{staged}-list.txt", "--output", f"{staged}-plan.json"]) == 0
    plan = json.loads(storage.read_text(f"{staged}-plan.json"))
    assert plan["videos"][videos[0]] == {"frames": 16, "objects": 2}
    assert plan["videos"][videos[2]] == {"frames": 0, "objects": 0}

    pred = f"{bucket}/pred-staged"
    result = infer(checkpoint[0], TINY, frames, masks, pred, videos=videos[:3], device="cpu")
    assert result.report.done == 2
    [failure] = result.report.failures
    assert failure.video == videos[2] and failure.stage == "fetch" and "not staged" in failure.reason
    for video in videos[:2]:
        assert_same_masks(predicted_masks(pred, video), predicted_masks(pred_raw, video))


def test_cli_exit_status_2_when_the_shard_cannot_run(split, bucket, capsys):
    root, _, _ = split
    rc = savflow_main(["infer", "--checkpoint", f"{bucket}/checkpoints/missing.pt", "--model-config", TINY,
                       "--frames", f"{root}/{FRAMES}", "--masks", f"{root}/{MASKS}", "--output",
                       f"{bucket}/pred-none", "--device", "cpu"])
    assert rc == 2
    assert "missing.pt" in capsys.readouterr().err


def test_predictions_made_differently_are_refused_or_redone(split, checkpoint, bucket, tmp_path, capsys):
    """Resume keyed by what made the predictions (issue 12): the same checkpoint (by content: a copy elsewhere
    counts as the same), options and inputs skip; another checkpoint is refused naming the digests, and
    ``--overwrite`` predicts exactly those videos again; inputs changed since (a mask rewritten) count too."""
    root, local_split, videos = split
    frames, masks = f"{root}/{FRAMES}", f"{root}/{MASKS}"
    pred = f"{bucket}/pred-keyed"
    first = infer(checkpoint[0], TINY, frames, masks, pred, videos=videos[:2], device="cpu")
    assert first.report.done == 2
    copy = f"{bucket}/elsewhere/tiny-copy.pt"
    storage.write_bytes(copy, checkpoint[1].read_bytes())
    same = infer(copy, TINY, frames, masks, pred, videos=videos[:2], device="cpu")
    assert (same.report.skipped, same.report.done) == (2, 0)

    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    state = torch.load(checkpoint[1], map_location="cpu")
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, other)
    cli = ["infer", "--checkpoint", str(other), "--model-config", TINY, "--frames", frames, "--masks", masks,
           "--output", pred, "--video-list", str(tmp_path / "list.txt"), "--device", "cpu"]
    (tmp_path / "list.txt").write_text("\n".join(videos[:2]) + "\n")
    before = generations(pred)
    assert savflow_main(cli) == 2
    err = capsys.readouterr().err
    assert f"{pred}: predictions of 2 made differently ({videos[0]}: checkpoint_sha256: " in err
    assert "--overwrite" in err
    assert generations(pred) == before

    assert savflow_main([*cli, "--overwrite"]) == 0
    for video in videos[:2]:
        assert markers.read_marker(pred, video)["checkpoint"] == str(other)
    assert set(generations(pred)) == set(before)

    mask = savformat.object_mask_path(videos[0], 1, 0)
    storage.write_bytes(f"{root}/{mask}", (local_split / mask).read_bytes())
    with pytest.raises(ValueError, match=rf"1 made differently \({videos[0]}: inputs\."):
        infer(str(other), TINY, frames, masks, pred, videos=videos[:2], device="cpu")


def test_benchmark_presets_set_the_prompting_and_are_recorded(later_split, checkpoint, bucket, tmp_path, capsys):
    """Benchmark presets (issue 14, point 3): ``--benchmark lvos`` prompts objects where they first appear (as
    the official tools/README says for LVOS and YouTube-VOS), the evaluation records the preset and the
    predictions' inference options in metrics.json (and so in the regression protocol), and predictions made
    with another benchmark's prompting are refused by name."""
    root, local, video = later_split
    pred, out = f"{bucket}/pred-lvos", str(tmp_path / "eval")
    assert savflow_main(["infer", "--checkpoint", checkpoint[0], "--model-config", TINY, "--frames",
                         f"{root}/{FRAMES}", "--masks", f"{root}/{MASKS}", "--output", pred, "--device", "cpu",
                         "--benchmark", "lvos"]) == 0
    assert markers.read_marker(pred, video)["track_later_objects"] is True
    assert_same_masks(predicted_masks(pred, video), reference_masks(checkpoint[1], local, video, "later"))

    evaluate = ["evaluate", "--gt-root", f"{root}/{MASKS}", "--pred-root", pred, "--num-workers", "1", "--quiet"]
    assert savflow_main([*evaluate, "--output", out, "--benchmark", "lvos"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["benchmark"] == "lvos" and metrics["skip_first_last"] is True
    assert metrics["protocol"] == {"skip_first_last": True, "benchmark": "lvos", "inference": {
        "use_all_masks": False, "track_later_objects": True, "score_thresh": 0.0}}
    capsys.readouterr()
    assert savflow_main([*evaluate, "--output", str(tmp_path / "davis"), "--benchmark", "davis"]) == 2
    err = capsys.readouterr().err
    assert f"{video}: track_later_objects was True, the davis protocol has False" in err
    assert not (tmp_path / "davis" / "metrics.json").exists()
