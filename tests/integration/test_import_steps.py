"""Imported datasets through the real steps: ``savflow train`` (the tiny config on CPU) reads an import as it is,
``stage`` copies its val layout and stages its mp4 split, ``evaluate`` scores its masks; and what ``validate``
reports is what sam2 does: the video it calls too short crashes sam2's training as the issue describes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from savflow.common import savformat, storage
from savflow.common.demo_data import SyntheticSpec
from savflow.importers import layout, samples
from savflow.importers.run import import_dataset
from savflow.validate.needs import read_needs
from savflow.validate.run import validate_split

SPEC = SyntheticSpec(num_videos=2, num_frames=16, height=64, width=64, num_objects=2, seed=7)
RUN_TIMEOUT = 300


def _worker(args: list[str], tmp_path: Path) -> tuple[int, str]:
    env = dict(os.environ, SAVFLOW_SCRATCH=str(tmp_path / "scratch"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "savflow.train.worker", *args], capture_output=True, text=True,
                          env=env, timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr


def _train_args(dest: str, exp: str, *overrides: str) -> list[str]:
    return ["--config", "sam2.1_tiny128_sav_finetune", "--train-frames", storage.join(dest, savformat.FRAMES_DIR),
            "--train-annotations", storage.join(dest, savformat.ANNOTATIONS_DIR),
            "--file-list", storage.join(dest, layout.FILE_LIST), "--experiment-dir", exp, "--epochs", "1",
            "--override", "dataset.multiplier=2", *overrides]


def test_an_imported_davis_set_trains_with_its_recorded_overrides(tmp_path: Path) -> None:
    samples.write_davis(str(tmp_path / "src"), SPEC)
    dest = str(tmp_path / "out")
    result = import_dataset("davis", str(tmp_path / "src"), dest, workers=2)
    overrides = json.loads(storage.read_text(result.record_uri))["train"]["overrides"]
    clip = ["scratch.num_frames=3"]
    report = validate_split(dest, read_needs("sam2.1_tiny128_sav_finetune", [*overrides, *clip]))
    assert {(f.check, f.severity) for f in report.findings} == {("first-frame", "warning")}  # the later object
    assert report.valid == SPEC.video_ids()
    rc, log = _worker(_train_args(dest, str(tmp_path / "exp"), *overrides, *clip), tmp_path)
    assert rc == 0, log[-3000:]
    assert "Loading failed" not in log  # sam2 sampled every clip at its first try
    metrics = json.loads((tmp_path / "exp" / "train_metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["steps"] == 4


def test_what_validate_calls_too_few_annotated_frames_crashes_sam2(tmp_path: Path) -> None:
    """The issue's first pitfall, reproduced: 6 annotated frames, clips of 8."""
    short = SyntheticSpec(num_videos=1, num_frames=6, height=32, width=32, num_objects=2)
    samples.write_davis(str(tmp_path / "src"), short, appears_at=0)
    dest = str(tmp_path / "out")
    overrides = import_dataset("davis", str(tmp_path / "src"), dest, workers=1).overrides
    report = validate_split(dest, read_needs("sam2.1_tiny128_sav_finetune", overrides))
    assert [(f.check, f.field) for f in report.findings] == [("annotated-frames", "masklet")]
    rc, log = _worker(_train_args(dest, str(tmp_path / "exp"), *overrides), tmp_path)
    assert rc != 0 and "sampled_frms_and_objs" in log, log[-3000:]


def _evaluate(gt: str, pred: str, out: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "savflow.pipelines.cli", "evaluate", "--gt-root", gt, "--pred-root",
                           pred, "--output", out, "--num-workers", "1", "--quiet"], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_val_layout_stages_byte_for_byte_and_evaluates(store_root: str, tmp_path: Path) -> None:
    from savflow.stage.stage import stage

    samples.write_ytvos(storage.join(store_root, "src"), SPEC)
    dest = storage.join(store_root, "out")
    assert import_dataset("ytvos", storage.join(store_root, "src"), dest, workers=2).exit_code == 0
    staged = storage.join(store_root, "staged")
    result = stage(dest, staged, progress=False, workers=2)
    assert result.exit_code == 0 and sorted(result.staged) == SPEC.video_ids()
    video = SPEC.video_ids()[0]
    for name in (savformat.frames_path(video, 3), savformat.object_mask_path(video, 1, 3)):
        assert storage.read_bytes(storage.join(staged, name)) == storage.read_bytes(storage.join(dest, name))
    masks = storage.join(staged, savformat.MASKS_DIR)
    local = tmp_path / "masks"
    storage.download_tree(masks, local)
    rc, out = _evaluate(str(local), str(local), str(tmp_path / "eval"))
    assert rc == 0 and "J&F: 100.0" in out, out


def test_the_mp4_split_stages_like_sav_train(tmp_path: Path) -> None:
    """SA-V's stride: ``--mp4`` writes what stage takes as SA-V train; the staged annotation is the import's and
    the staged masks are the import's val layout, pixel for pixel; the staged frames are exactly what stage
    makes of the source frames' pixels (the mp4 loses nothing)."""
    import cv2
    from PIL import Image

    from savflow.stage.stage import stage

    samples.write_sav_val(str(tmp_path / "src"), SPEC)
    dest = tmp_path / "out"
    assert import_dataset("sav-val", str(tmp_path / "src"), str(dest), mp4=True, workers=2).exit_code == 0
    report = validate_split(str(dest / "mp4"), read_needs("sam2.1_tiny128_sav_finetune", ["scratch.num_frames=3"]))
    assert report.invalid == [] and report.valid == SPEC.video_ids(), report.lines()
    staged = tmp_path / "staged"
    result = stage(str(dest / "mp4"), str(staged), layout="dir", masks=True, progress=False, workers=2)
    assert result.exit_code == 0, result.failures
    video = SPEC.video_ids()[0]
    assert (staged / savformat.annotation_path(video)).read_bytes() == (dest / savformat.annotation_path(video)).read_bytes()
    for frame in (0, 4, 8, 12):
        for obj in range(SPEC.num_objects):
            name = savformat.object_mask_path(video, obj, frame)
            np.testing.assert_array_equal(savformat.decode_object_png((staged / name).read_bytes()),
                                          savformat.decode_object_png((dest / name).read_bytes()))
    # the mp4 is lossless: stage's JPEG is exactly what its encoder makes of the source frame's pixels
    source = np.asarray(Image.open(tmp_path / "src" / savformat.frames_path(video, 5)).convert("RGB"))
    ok, expected = cv2.imencode(".jpg", source[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok and (staged / savformat.frames_path(video, 5)).read_bytes() == expected.tobytes()


@pytest.mark.parametrize("fmt, writer", [("frames+masks", samples.write_frames_masks),
                                         ("sav-val", samples.write_sav_val)])
def test_other_formats_validate_for_the_b_plus_config(tmp_path: Path, fmt: str, writer) -> None:
    writer(str(tmp_path / "src"), SyntheticSpec(num_videos=1, num_frames=40, height=32, width=32))
    result = import_dataset(fmt, str(tmp_path / "src"), str(tmp_path / "out"), workers=1)
    report = validate_split(str(tmp_path / "out"), read_needs("sam2.1_hiera_b+_sav_finetune", result.overrides))
    assert not [f for f in report.findings if f.severity == "error"], report.lines()


def test_an_import_stages_as_a_train_split_at_its_own_stride(tmp_path: Path) -> None:
    """What the pipeline's stage train does with an imported DAVIS set (annotated on every frame, which no mp4
    split can carry): the annotations are staged with the frames, byte for byte, in the tar layout training
    reads; the staged annotation is read at its recorded stride (masks on every frame); a sample rate that
    would drop annotated frames fails each video naming the stride; an import without the val layout is still
    a train split."""
    from savflow.common.materialize import materialize
    from savflow.stage.stage import stage

    samples.write_davis(str(tmp_path / "src"), SPEC)
    dest = tmp_path / "out"
    assert import_dataset("davis", str(tmp_path / "src"), str(dest), workers=2).exit_code == 0
    result = stage(str(dest), str(tmp_path / "staged"), layout="tar", progress=False, workers=2)
    assert result.exit_code == 0 and sorted(result.staged) == SPEC.video_ids(), result.failures
    local = tmp_path / "local"
    materialize(str(tmp_path / "staged"), local, SPEC.video_ids(), workers=2)
    video = SPEC.video_ids()[0]
    name = savformat.annotation_path(video)
    assert (local / name).read_bytes() == (dest / name).read_bytes()
    ann = savformat.parse_manual_json((local / name).read_bytes())
    assert ann.ann_every == 1 and ann.annotated_frames == list(range(SPEC.num_frames))
    assert len(list((local / savformat.MASKS_DIR / video / "000").iterdir())) == SPEC.num_frames

    refused = stage(str(dest), str(tmp_path / "every-2nd"), sample_rate=2, progress=False, workers=2)
    assert {f.video for f in refused.failures} == set(SPEC.video_ids())
    assert all("annotated every 1 frame(s); sample rate 2" in f.reason for f in refused.failures)

    assert import_dataset("davis", str(tmp_path / "src"), str(tmp_path / "no-val"), val=False).exit_code == 0
    result = stage(str(tmp_path / "no-val"), str(tmp_path / "staged-no-val"), layout="dir", progress=False)
    assert result.exit_code == 0 and sorted(result.staged) == SPEC.video_ids(), result.failures
    assert (tmp_path / "staged-no-val" / name).is_file()
    assert not (tmp_path / "staged-no-val" / savformat.MASKS_DIR).exists()


def test_an_edited_imported_annotation_restages_its_video_only(tmp_path: Path) -> None:
    """The annotation of an imported (val-layout) split is part of what made its staged video: a re-run
    after one annotation changed redoes that video, with the new bytes, and skips the others."""
    import time

    from savflow.stage.stage import stage

    samples.write_davis(str(tmp_path / "src"), SPEC)
    dest = tmp_path / "out"
    assert import_dataset("davis", str(tmp_path / "src"), str(dest), workers=2).exit_code == 0
    staged = tmp_path / "staged"
    first = stage(str(dest), str(staged), layout="dir", progress=False, workers=2)
    assert sorted(first.staged) == SPEC.video_ids(), first.failures
    edited, other = SPEC.video_ids()
    name = savformat.annotation_path(edited)
    doc = json.loads((dest / name).read_text())
    doc["masklet_size_bucket"] = ["large"] * len(doc["masklet_id"])
    time.sleep(0.01)  # a new mtime, as every write on GCS is a new generation
    (dest / name).write_text(json.dumps(doc))
    again = stage(str(dest), str(staged), layout="dir", progress=False, workers=2)
    assert (again.staged, again.skipped) == ([edited], [other]), again.summary()
    assert edited in again.redone
    assert (staged / name).read_bytes() == (dest / name).read_bytes()
