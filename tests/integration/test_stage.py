"""Staging end to end: real clips and generated SA-V videos through the GCS emulator, materialized to local disk
and read by sam2's own ``JSONRawDataset``; train with per-object masks, scored per size bucket; val/test copies;
restarts (partial videos, a killed process, masks added later); bad input.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import av
import cv2
import numpy as np
import pytest

from savflow.common import markers, savformat, storage, storage_gcs
from savflow.common.failures import FailureReport
from savflow.common.demo_data import SyntheticSpec, generate_split, write_raw_train_split, write_val_split
from savflow.pipelines.cli import main as savflow_main
from savflow.common import staged as lay
from savflow.common.materialize import materialize
from savflow.stage.stage import stage

VIDEOS = Path(__file__).parents[1] / "data" / "videos"
SMALL = SyntheticSpec(num_videos=3, num_frames=48, height=128, width=128, num_objects=2, seed=7)


def real_clip_annotation(video: str, clip: Path) -> bytes:
    """A manual.json for a real clip (they ship without one): one rectangle on every 4th frame, with the clip's
    own frame count and size, as SA-V would describe it."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        count, height, width = stream.frames, stream.codec_context.height, stream.codec_context.width
    mask = np.zeros((height, width), dtype=bool)
    mask[100:300, 200:500] = True
    rle = savformat.encode_rle(mask)
    return json.dumps({"video_id": video, "video_frame_count": count, "video_height": height,
                       "video_width": width, "masklet": [[rle] for _ in range(math.ceil(count / 4))],
                       "masklet_id": [0], "masklet_num": 1}).encode()


def put_real_clip(root: str, video: str, clip: Path, data: bytes | None = None) -> None:
    storage.write_bytes(storage.join(root, f"{video}.mp4"), clip.read_bytes() if data is None else data)
    storage.write_bytes(storage.join(root, f"{video}_manual.json"), real_clip_annotation(video, clip))


def check_against_marker(root: str, video: str) -> dict:
    """Every file the marker lists is in ``root`` (dir layout) with the recorded size and CRC-32."""
    marker = markers.read_marker(root, video)
    assert marker is not None
    for entry in marker["files"]:
        lay.check_data(entry, storage.read_bytes(storage.join(root, entry["name"])), where=root)
    return marker


def test_train_split_through_emulator_is_read_by_sam2_jsonrawdataset(gcs_bucket: str, tmp_path: Path) -> None:
    from training.dataset.vos_raw_dataset import JSONRawDataset

    source, dest = f"{gcs_bucket}/raw/train", f"{gcs_bucket}/staged/train"
    ids = write_raw_train_split(source, SMALL)
    put_real_clip(source, "03_blocks", VIDEOS / "03_blocks.mp4")

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = stage(source, dest, sample_rate=4, workers=2, progress=False, scratch=scratch)
    assert (result.split, result.layout, result.exit_code) == ("train", "tar", 0)
    assert not list(scratch.iterdir()), "downloads and archives are cleaned up"
    assert result.failures == [] and sorted(result.staged) == sorted(ids + ["03_blocks"])
    assert result.frames_written == 3 * 12 + 73 and result.frames_decoded == 3 * 48 + 292
    names = storage.list_prefix(dest)
    assert sorted(n for n in names if n.startswith("videos/")) == sorted(f"videos/{v}.tar" for v in result.staged)
    assert storage.read_text(f"{dest}/file_list.txt").split() == sorted(result.staged)
    report = json.loads(storage.read_text(f"{dest}/_reports/stage-shard-0-of-1.json"))
    assert (report["done"], report["failed"]) == (4, 0)

    local = tmp_path / "local"
    assert materialize(dest, local, workers=4) == sorted(result.staged)
    dataset = JSONRawDataset(img_folder=str(local / "JPEGImages_24fps"), gt_folder=str(local / "annotations"),
                             file_list_txt=str(local / "file_list.txt"), ann_every=4)
    assert dataset.video_names == sorted(result.staged)
    truth = {v.video_id: v for v in generate_split(SMALL)}
    for idx, name in enumerate(dataset.video_names):
        video, segments = dataset.get_video(idx)
        if name == "03_blocks":
            assert [f.frame_idx for f in video.frames] == list(range(0, 292, 4))
            masks = segments.load(8)
            assert set(masks) == {0} and int(masks[0].sum()) == 200 * 300
            assert cv2.imread(video.frames[2].image_path).shape == (720, 1280, 3)
            continue
        synthetic = truth[name]
        present = [t for t in range(0, 48, 4) if synthetic.masks[:, t].any(axis=(1, 2)).all()]
        assert [f.frame_idx for f in video.frames] == present
        for frame in video.frames[:3]:
            masks = segments.load(frame.frame_idx)
            for obj in range(2):
                assert np.array_equal(masks[obj].numpy().astype(bool), synthetic.masks[obj, frame.frame_idx])
            # The JPEG is the frame with the same index of the 24 fps video (not a neighbour).
            image = cv2.imread(frame.image_path)[..., ::-1].astype(float)
            errors = [np.abs(image - synthetic.frames[t]).mean() for t in range(48)]
            assert int(np.argmin(errors)) == frame.frame_idx and errors[frame.frame_idx] < 10

    # A second call finds everything complete locally: it needs no staged archive any more.
    for video in result.staged:
        storage.delete(f"{dest}/videos/{video}.tar")
    assert materialize(dest, local, workers=4) == sorted(result.staged)


def check_val_copy(store_root: str, local: Path, layout: str) -> None:
    """Stage a generated val split at sample rate 2 and check that frames and masks arrive unchanged."""
    spec = SyntheticSpec(num_videos=2, num_frames=8, height=64, width=96, num_objects=2, seed=1)
    source, dest = f"{store_root}/raw/val", f"{store_root}/staged/val"
    ids = write_val_split(source, spec)
    result = stage(source, dest, sample_rate=2, workers=2, layout=layout, progress=False)
    assert (result.split, result.layout, result.exit_code, sorted(result.staged)) == ("val", layout, 0, ids)
    assert materialize(dest, local) == ids
    for video in ids:
        frames = sorted(p.name for p in (local / "JPEGImages_24fps" / video).iterdir())
        assert frames == [f"{t:05d}.jpg" for t in range(0, 8, 2)]
        copied = [n for n in storage.list_prefix(source) if f"/{video}/" in n and
                  (n.startswith(savformat.MASKS_DIR) or int(Path(n).stem) % 2 == 0)]
        assert len(copied) == 4 + 2 * 2
        for rel in copied:
            assert (local / rel).read_bytes() == storage.read_bytes(f"{source}/{rel}")
        marker = markers.read_marker(dest, video)
        assert (marker["frame_count"], marker["frames_written"], marker["objects"]) == (8, 4, [0, 1])
        if layout == "dir":
            check_against_marker(dest, video)


def test_val_split_is_copied_byte_for_byte(store_root: str, tmp_path: Path) -> None:
    check_val_copy(store_root, tmp_path / "local", "dir")


def test_val_split_in_tar_layout(tmp_path: Path) -> None:
    check_val_copy(str(tmp_path / "store"), tmp_path / "local", "tar")


def test_val_split_problems_are_per_video(tmp_path: Path) -> None:
    spec = SyntheticSpec(num_videos=5, num_frames=8, height=64, width=64, num_objects=1, seed=2)
    source = tmp_path / "raw"
    write_val_split(str(source), spec)
    frames, masks = source / "JPEGImages_24fps", source / "Annotations_6fps"
    (frames / "sav_000002" / "00003.jpg").unlink()  # a gap
    (masks / "sav_000003" / "000" / "00012.png").write_bytes((masks / "sav_000003/000/00000.png").read_bytes())
    (frames / "sav_000004" / "00005.jpg").write_bytes(b"<html>not a jpeg</html>")
    (frames / "sav_000005" / "thumbs.db").write_bytes(b"")
    result = stage(str(source), str(tmp_path / "staged"), workers=2, progress=False)
    assert result.staged == ["sav_000001"] and result.exit_code == 1
    reasons = {f.video: (f.stage, f.reason) for f in result.failures}
    assert reasons["sav_000002"][0] == "frame-count" and "frame 00003 is missing" in reasons["sav_000002"][1]
    assert reasons["sav_000003"][0] == "frame-count" and "000/00012.png" in reasons["sav_000003"][1]
    assert reasons["sav_000004"][0] == "copy" and "00005.jpg: not a JPEG" in reasons["sav_000004"][1]
    assert reasons["sav_000005"][0] == "layout" and "thumbs.db" in reasons["sav_000005"][1]
    with pytest.raises(ValueError, match="sample_rate 3"):
        stage(str(source), str(tmp_path / "staged3"), sample_rate=3, progress=False)


def test_bad_input_is_reported_per_video_and_the_rest_is_staged(tmp_path: Path) -> None:
    source, dest = tmp_path / "raw", tmp_path / "staged"
    ids = write_raw_train_split(str(source), SyntheticSpec(num_videos=8, num_frames=48, height=64, width=64,
                                                           num_objects=1, seed=3))
    good = ids[:2]
    mp4 = (source / f"{ids[2]}.mp4").read_bytes()
    (source / f"{ids[2]}.mp4").write_bytes(mp4[: len(mp4) // 2])            # truncated (index at the end)
    (source / f"{ids[3]}_manual.json").unlink()                              # missing annotation
    (source / f"{ids[4]}_manual.json").write_text('{"video_id": "sav_000005", ')  # malformed JSON
    doc = json.loads((source / f"{ids[5]}_manual.json").read_text())
    doc["masklet"][1][0] = savformat.encode_rle(np.ones((32, 32), dtype=bool))  # RLE size mismatch
    (source / f"{ids[5]}_manual.json").write_text(json.dumps(doc))
    for video, count in ((ids[6], 40), (ids[7], 60)):                          # frame count mismatch
        doc = json.loads((source / f"{video}_manual.json").read_text())
        doc["video_frame_count"], doc["masklet"] = count, doc["masklet"][: count // 4]
        (source / f"{video}_manual.json").write_text(json.dumps(doc))
    doc = json.loads((source / f"{ids[0]}_manual.json").read_text())
    doc["video_id"] = "sav_000099"
    (source / "sav_000099_manual.json").write_text(json.dumps(doc))                # no mp4
    real = (VIDEOS / "03_blocks.mp4").read_bytes()
    put_real_clip(str(source), "clip_truncated", VIDEOS / "03_blocks.mp4", real[: len(real) // 2])
    corrupt = bytearray(real)
    start = corrupt.find(b"mdat") + 2000
    rng = np.random.default_rng(0)
    for k in range(5):
        corrupt[start + k * 3000: start + k * 3000 + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    put_real_clip(str(source), "clip_corrupt", VIDEOS / "03_blocks.mp4", bytes(corrupt))

    code = savflow_main(["stage", "--source", str(source), "--dest", str(dest), "--sample-rate", "4",
                         "--workers", "2", "--no-progress"])
    assert code == 1
    report = json.loads((dest / "_reports" / "stage-shard-0-of-1.json").read_text())
    got = {f["video"]: (f["stage"], f["reason"]) for f in report["failures"]}
    expected_stage = {ids[2]: "decode", ids[3]: "annotation", ids[4]: "annotation", ids[5]: "annotation",
                      ids[6]: "frame-count", ids[7]: "frame-count", "sav_000099": "fetch",
                      "clip_truncated": "frame-count", "clip_corrupt": "decode"}
    assert {v: s for v, (s, _) in got.items()} == expected_stage
    assert f"{ids[2]}.mp4: cannot open" in got[ids[2]][1]
    assert f"{ids[3]}_manual.json: missing" in got[ids[3]][1]
    assert "malformed JSON" in got[ids[4]][1]
    assert "masklet[1][0].size" in got[ids[5]][1] and "[32, 32]" in got[ids[5]][1]
    assert f"{ids[6]}.mp4: 48 frames, but" in got[ids[6]][1] and "video_frame_count 40" in got[ids[6]][1]
    assert f"{ids[7]}.mp4: 48 frames, but" in got[ids[7]][1] and "video_frame_count 60" in got[ids[7]][1]
    decoded = re.search(r"clip_truncated.mp4: (\d+) frames, but .*clip_truncated_manual.json says "
                        r"video_frame_count 292", got["clip_truncated"][1])
    assert decoded and 0 < int(decoded.group(1)) < 292
    assert "clip_corrupt.mp4: frame 0: corrupt" in got["clip_corrupt"][1]
    assert (report["total"], report["done"], report["failed"]) == (11, 2, 9)
    assert sorted(markers.done_units(str(dest))) == good
    assert (dest / "file_list.txt").read_text().split() == good

    # Within --max-failures the run succeeds; the failed videos are tried again (and fail again).
    again = stage(str(source), str(dest), sample_rate=4, workers=2, max_failures=9, progress=False)
    assert (again.exit_code, again.skipped, len(again.failures)) == (0, good, 9)


def test_partial_videos_are_redone_and_complete_ones_skipped(tmp_path: Path) -> None:
    source, dest = tmp_path / "raw", tmp_path / "staged"
    ids = write_raw_train_split(str(source), SMALL)
    ann = source / f"{ids[1]}_manual.json"
    right = ann.read_text()
    doc = json.loads(right)
    doc["video_frame_count"], doc["masklet"] = 40, doc["masklet"][:10]
    ann.write_text(json.dumps(doc))

    # At sample rate 1 the video is decoded as a stream: it fails part-way, after some of its frames went out.
    first = stage(str(source), str(dest), workers=2, layout="dir", progress=False)
    assert first.staged == [ids[0], ids[2]]
    assert [(f.video, f.stage) for f in first.failures] == [(ids[1], "frame-count")]
    assert "more than 40 frames" in first.failures[0].reason
    assert ids[1] not in markers.done_units(str(dest))
    # Whatever that attempt left, plus a frame of an older attempt and the temp file of a write cut short.
    folder = dest / "JPEGImages_24fps" / ids[1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00099.jpg").write_bytes(b"stale")
    (folder / ".00012.jpg.tmp-0123abcd").write_bytes(b"half")

    ann.write_text(right)
    second = stage(str(source), str(dest), workers=2, layout="dir", progress=False)
    assert (second.staged, second.skipped, second.failures) == ([ids[1]], [ids[0], ids[2]], [])
    assert sorted(os.listdir(folder)) == [f"{t:05d}.jpg" for t in range(48)]
    for video in ids:
        marker = check_against_marker(str(dest), video)
        assert len(list((dest / "JPEGImages_24fps" / video).glob("*.jpg"))) == marker["frames_written"] == 48

    # tar layout: a lost marker means the video is redone, whatever its archive holds.
    tar_dest = tmp_path / "staged_tar"
    stage(str(source), str(tar_dest), sample_rate=4, workers=2, layout="tar", progress=False)
    markers.clear_marker(str(tar_dest), ids[0])
    (tar_dest / "videos" / f"{ids[0]}.tar").write_bytes(b"half an archive")
    third = stage(str(source), str(tar_dest), sample_rate=4, workers=2, layout="tar", progress=False)
    assert (third.staged, third.skipped) == ([ids[0]], ids[1:])
    assert materialize(str(tar_dest), tmp_path / "local") == ids


def test_killed_run_resumes_without_duplicates(tmp_path: Path) -> None:
    source, dest = tmp_path / "raw", tmp_path / "staged"
    ids = write_raw_train_split(str(source), SyntheticSpec(num_videos=10, num_frames=48, height=128, width=128,
                                                           num_objects=1, seed=5))
    cmd = [sys.executable, "-m", "savflow.pipelines.cli", "stage", "--source", str(source), "--dest", str(dest),
           "--layout", "dir", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not markers.done_units(str(dest)):  # the first video is complete: kill the run during the next ones
        assert proc.poll() is None and time.monotonic() < deadline, "stage ended before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = markers.done_units(str(dest))
    assert 1 <= len(done_at_kill) < len(ids)

    resumed = stage(str(source), str(dest), workers=2, layout="dir", progress=False)
    assert resumed.exit_code == 0 and sorted(resumed.skipped) == sorted(done_at_kill)
    assert sorted(resumed.staged) == sorted(set(ids) - done_at_kill)
    for video in ids:
        marker = check_against_marker(str(dest), video)
        assert len(list((dest / "JPEGImages_24fps" / video).iterdir())) == marker["frames_written"] == 48
    assert materialize(str(dest), tmp_path / "local") == ids


def test_shards_cover_every_video_once(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    ids = write_raw_train_split(str(source), SyntheticSpec(num_videos=5, num_frames=8, height=32, width=32,
                                                           num_objects=1, seed=4))
    dest = tmp_path / "staged"
    results = [stage(str(source), str(dest), shard=k, num_shards=3, workers=1, progress=False) for k in range(3)]
    assert sorted(v for r in results for v in r.staged) == ids
    assert all(len(r.videos) in (1, 2) for r in results)
    assert sorted(markers.done_units(str(dest))) == ids
    assert (dest / "file_list.txt").read_text().split() == ids
    assert sorted(p.name for p in (dest / "_reports").iterdir()) == [f"stage-shard-{k}-of-3.json" for k in range(3)]
    subset = stage(str(source), str(tmp_path / "subset"), videos=[ids[1], "sav_404"], workers=1, progress=False)
    assert subset.staged == [ids[1]] and [(f.video, f.stage) for f in subset.failures] == [("sav_404", "list")]


def test_materialize_checks_data_against_the_marker(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    ids = write_raw_train_split(str(source), SyntheticSpec(num_videos=2, num_frames=8, height=32, width=32,
                                                           num_objects=1, seed=6))
    for layout in ("dir", "tar"):
        dest = tmp_path / f"staged_{layout}"
        stage(str(source), str(dest), workers=1, layout=layout, progress=False)
        if layout == "dir":
            (dest / savformat.frames_path(ids[0], 3)).write_bytes(b"\xff\xd8\xff changed")
        else:
            tar = dest / "videos" / f"{ids[0]}.tar"
            data = bytearray(tar.read_bytes())
            data[-2000] ^= 1
            tar.write_bytes(bytes(data))
        local = tmp_path / f"local_{layout}"
        report = FailureReport("materialize")
        assert materialize(str(dest), local, ids + ["sav_404"], report=report) == [ids[1]]
        reasons = {f.video: f.reason for f in report.failures}
        assert set(reasons) == {ids[0], "sav_404"} and "not staged" in reasons["sav_404"]
        assert ("CRC-32" if layout == "dir" else "SHA-256") in reasons[ids[0]]
        assert not (local / "_done" / f"{ids[0]}.json").exists()
        assert (local / "file_list.txt").read_text().split() == [ids[1]]


def _object_of(request) -> str:
    """The object a recorded GCS request is about: in the URL for reads, in the upload's JSON metadata part
    for multipart uploads, '' for bucket-level requests (listings, bucket metadata)."""
    if "/o/" in request.path:
        return unquote(request.path.split("/o/", 1)[1])
    match = re.search(rb'"name": ?"([^"]+)"', request.body)
    return match.group(1).decode() if match else ""


def test_cli_tar_layout_costs_at_most_five_requests_per_video(gcs_emulator: str, gcs_bucket: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from recording_proxy import RecordingProxy

    source, dest = f"{gcs_bucket}/raw", f"{gcs_bucket}/staged"
    ids = write_raw_train_split(source, SyntheticSpec(num_videos=8, num_frames=24, height=64, width=64,
                                                      num_objects=1, seed=8))
    with RecordingProxy(gcs_emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        monkeypatch.setattr(storage_gcs, "_clients", {})
        code = savflow_main(["stage", "--source", source, "--dest", dest, "--sample-rate", "4", "--workers", "2",
                             "--layout", "tar", "--no-progress"])
        assert code == 0
        staged = list(proxy.requests)
        proxy.clear()
        assert savflow_main(["materialize", "--staged", dest, "--local", str(tmp_path / "local")]) == 0
        materialized = list(proxy.requests)
    assert all(r.status < 400 for r in staged + materialized)
    for video in ids:
        mine = [r for r in staged if f"/{video}" in _object_of(r)]
        # manual.json + mp4 read, archive + marker written
        assert sorted((r.method, _object_of(r).rsplit("/", 1)[-1]) for r in mine) == sorted([
            ("GET", f"{video}_manual.json"), ("GET", f"{video}.mp4"), ("POST", f"{video}.tar"),
            ("POST", f"{video}.json")])
        assert len([r for r in materialized if f"/{video}" in _object_of(r)]) == 2  # marker + archive
    assert len(staged) <= 5 * len(ids), [(r.method, r.path) for r in staged]
    assert (tmp_path / "local" / "file_list.txt").read_text().split() == ids


MASKED = SyntheticSpec(num_videos=2, num_frames=16, height=96, width=96, num_objects=3, seed=0)  # 2 size buckets


def object_pngs(source: str, video: str) -> dict[str, bytes]:
    """The independent reference: savformat's per-object PNGs of the video's manual.json as it is in the source."""
    uri = storage.join(source, f"{video}_manual.json")
    return dict(savformat.manual_to_object_pngs(savformat.parse_manual_json(storage.read_bytes(uri), file=uri)))


def edit_annotation(source: str, video: str, frame: int, obj: int, rle: dict | None) -> None:
    uri = storage.join(source, f"{video}_manual.json")
    doc = json.loads(storage.read_bytes(uri))
    doc["masklet"][frame][obj] = rle
    storage.write_text(uri, json.dumps(doc))


def staged_masks(local: Path, video: str) -> dict[str, bytes]:
    folder = local / savformat.MASKS_DIR / video
    return {p.relative_to(local).as_posix(): p.read_bytes() for p in folder.rglob("*.png")}


def test_train_split_with_masks_is_scored_per_size_bucket(gcs_bucket: str, tmp_path: Path) -> None:
    from savflow.evaluate.evaluator import evaluate, size_buckets_from_manual
    from savflow.infer.inputs import Sources, VideoCounts

    source = f"{gcs_bucket}/raw"
    ids = write_raw_train_split(source, MASKED)
    edit_annotation(source, ids[0], 1, 2, None)  # object 2 absent on frame 4: an empty PNG, as in val/test
    expected = {video: object_pngs(source, video) for video in ids}
    hidden = expected[ids[0]][savformat.object_mask_path(ids[0], 2, 4)]
    assert not savformat.decode_object_png(hidden).any()
    for layout in ("dir", "tar"):
        dest = f"{gcs_bucket}/staged-{layout}"
        result = stage(source, dest, sample_rate=4, workers=2, layout=layout, masks=True, progress=False)
        assert (result.layout, result.staged, result.failures) == (layout, ids, [])
        local = tmp_path / layout
        assert materialize(dest, local, workers=2) == ids
        for video in ids:
            marker = markers.read_marker(dest, video)
            assert (marker["masks"], marker["objects"]) == (True, [0, 1, 2])
            got = staged_masks(local, video)
            assert len(got) == 3 * 4 and got == expected[video]
            assert {e["name"] for e in marker["files"] if e["name"].startswith(savformat.MASKS_DIR)} == set(got)
            assert (local / savformat.annotation_path(video)).read_bytes() == \
                storage.read_bytes(f"{source}/{video}_manual.json")
            assert sorted(p.name for p in (local / savformat.FRAMES_DIR / video).iterdir()) == \
                [f"{t:05d}.jpg" for t in range(0, 16, 4)]
            if layout == "dir":
                check_against_marker(dest, video)
        sources = Sources.resolve(f"{dest}/{savformat.FRAMES_DIR}", f"{dest}/{savformat.MASKS_DIR}")
        assert sources.counts(ids) == {video: VideoCounts(frames=4, objects=3) for video in ids}

    dest = f"{gcs_bucket}/staged-dir"
    buckets = size_buckets_from_manual(storage.join(dest, savformat.annotation_path(v)) for v in ids)
    assert sorted(buckets) == ids
    scored = evaluate(gt_root=f"{dest}/{savformat.MASKS_DIR}", pred_root=f"{dest}/{savformat.MASKS_DIR}",
                      size_buckets=buckets, num_workers=2)
    assert scored.global_scores.jf == pytest.approx(100.0) and scored.global_scores.objects == 6
    assert buckets == {ids[0]: {"000": "small", "001": "small", "002": "medium"},
                       ids[1]: {"000": "small", "001": "small", "002": "medium"}}
    per_bucket = scored.per_bucket()
    assert {b: s.objects for b, s in per_bucket.items()} == {"medium": 2, "small": 4}
    assert all(s.jf == pytest.approx(100.0) for s in per_bucket.values())


@pytest.mark.parametrize("layout", ["dir", "tar"])
def test_masks_rerun_redoes_videos_staged_without_them(tmp_path: Path, layout: str) -> None:
    source, dest = tmp_path / "raw", tmp_path / "staged"
    ids = write_raw_train_split(str(source), SyntheticSpec(num_videos=3, num_frames=8, height=32, width=32,
                                                           num_objects=2, seed=10))
    first = stage(str(source), str(dest), videos=ids[:2], layout=layout, workers=1, progress=False)
    assert first.staged == ids[:2] and markers.read_marker(str(dest), ids[0])["masks"] is False
    assert not storage.list_prefix(str(dest / savformat.MASKS_DIR))
    legacy = markers.read_marker(str(dest), ids[1])  # a marker written before masks were an option
    del legacy["masks"]
    markers.clear_marker(str(dest), ids[1])
    markers.write_marker(str(dest), ids[1], legacy)
    edit_annotation(str(source), ids[2], 1, 1, {"size": [32, 32], "counts": [2000]})  # runs past 32 x 32
    with pytest.raises(ValueError, match="sample_rate 3 would drop annotated frames"):
        stage(str(source), str(dest), sample_rate=3, layout=layout, masks=True, progress=False)

    code = savflow_main(["stage", "--source", str(source), "--dest", str(dest), "--layout", layout, "--masks",
                         "--workers", "1", "--no-progress"])
    assert code == 1
    report = json.loads((dest / "_reports" / "stage-shard-0-of-1.json").read_text())
    assert (report["done"], report["skipped"]) == (2, 0)
    [failure] = report["failures"]
    # the annotation reader sees runs that do not cover the frame (before any decoding), naming the field
    assert (failure["video"], failure["stage"]) == (ids[2], "annotation")
    assert f"{ids[2]}_manual.json: video {ids[2]}: field masklet[1][1].counts: counts runs cover 2000 pixels" \
        in failure["reason"]
    assert sorted(markers.done_units(str(dest))) == ids[:2]
    local = tmp_path / "local"
    assert materialize(str(dest), local) == ids[:2]
    for video in ids[:2]:
        assert markers.read_marker(str(dest), video)["masks"] is True
        assert staged_masks(local, video) == object_pngs(str(source), video)
        assert len(list((local / savformat.FRAMES_DIR / video).iterdir())) == 8
        if layout == "dir":
            check_against_marker(str(dest), video)

    # Without the flag, videos staged with masks are complete; the broken RLE is refused all the same (sam2's
    # dataset would decode it into a mask of the wrong size); mended, the video is staged without masks.
    plain = stage(str(source), str(dest), layout=layout, workers=1, progress=False)
    assert (plain.skipped, plain.staged, plain.exit_code) == (ids[:2], [], 1)
    edit_annotation(str(source), ids[2], 1, 1, None)
    plain = stage(str(source), str(dest), layout=layout, workers=1, progress=False)
    assert (plain.skipped, plain.staged, plain.exit_code) == (ids[:2], [ids[2]], 0)
    assert markers.read_marker(str(dest), ids[2])["masks"] is False
    again = stage(str(source), str(dest), videos=ids[:2], layout=layout, workers=1, masks=True, progress=False)
    assert (again.skipped, again.staged) == (ids[:2], [])


def test_rerun_with_other_settings_or_sources_redoes_what_differs(store_root: str, tmp_path: Path) -> None:
    """Resume is keyed by what made a video (issue 12): another sample rate, layout, quality or a replaced
    source object redoes exactly the videos made differently, and never reports them "already complete";
    the old settings' files are gone afterwards (a frame only the old rate kept, an archive of the old layout)."""
    source, dest = storage.join(store_root, "raw"), storage.join(store_root, "staged")
    ids = write_raw_train_split(source, SyntheticSpec(num_videos=3, num_frames=16, height=32, width=32,
                                                      num_objects=1, seed=12))
    first = stage(source, dest, sample_rate=4, layout="dir", workers=1, progress=False)
    assert first.staged == ids and not first.redone

    again = stage(source, dest, sample_rate=4, layout="dir", workers=1, progress=False)
    assert (again.staged, again.skipped) == ([], ids)

    every = stage(source, dest, sample_rate=1, layout="dir", workers=1, progress=False)
    assert (every.staged, every.skipped) == (ids, [])
    assert every.redone[ids[0]] == ["sample_rate: 4 -> 1"]
    assert "3 of them made differently before" in every.summary()
    frames = storage.list_prefix(storage.join(dest, savformat.FRAMES_DIR, ids[0]))
    assert len(frames) == 16

    back = stage(source, dest, sample_rate=4, layout="dir", workers=1, progress=False)
    assert back.staged == ids
    assert storage.list_prefix(storage.join(dest, savformat.FRAMES_DIR, ids[0])) == \
        [f"{t:05d}.jpg" for t in range(0, 16, 4)]

    tar = stage(source, dest, sample_rate=4, layout="tar", workers=1, progress=False)
    assert tar.staged == ids and tar.redone[ids[1]] == ["layout: dir -> tar"]
    assert not storage.list_prefix(storage.join(dest, savformat.FRAMES_DIR))
    quality = stage(source, dest, sample_rate=4, jpeg_quality=80, layout="tar", workers=1, progress=False)
    assert quality.redone[ids[2]] == ["jpeg_quality: 95 -> 80"]
    dirs = stage(source, dest, sample_rate=4, jpeg_quality=80, layout="dir", workers=1, progress=False)
    assert dirs.staged == ids and not storage.list_prefix(storage.join(dest, lay.ARCHIVE_DIR))

    time.sleep(0.01)  # a new local mtime; on GCS every write is a new generation
    mp4 = storage.join(source, f"{ids[1]}.mp4")
    storage.write_bytes(mp4, storage.read_bytes(mp4))
    replaced = stage(source, dest, sample_rate=4, jpeg_quality=80, layout="dir", workers=1, progress=False)
    assert (replaced.staged, replaced.skipped) == ([ids[1]], [ids[0], ids[2]])
    [diff] = replaced.redone[ids[1]]
    assert diff.startswith("source.mp4.version: ")
    assert materialize(dest, tmp_path / "local") == ids


def test_a_marker_without_a_key_is_redone(tmp_path: Path) -> None:
    """Output of a savflow that recorded no key cannot be trusted to match: it is staged again."""
    source, dest = tmp_path / "raw", tmp_path / "staged"
    ids = write_raw_train_split(str(source), SyntheticSpec(num_videos=2, num_frames=8, height=32, width=32,
                                                           num_objects=1, seed=13))
    stage(str(source), str(dest), workers=1, progress=False)
    legacy = markers.read_marker(str(dest), ids[0])
    del legacy["key"]
    markers.clear_marker(str(dest), ids[0])
    markers.write_marker(str(dest), ids[0], legacy)
    rerun = stage(str(source), str(dest), workers=1, progress=False)
    assert (rerun.staged, rerun.skipped) == ([ids[0]], [ids[1]])
    assert rerun.redone[ids[0]] == ["key: (not recorded) (written by an older savflow)"]


def test_training_copy_follows_data_staged_again(store_root: str, tmp_path: Path, caplog) -> None:
    """The case of issue 12: a video replaced at the source (16 frames, now 40) and staged again is copied
    again into the training pod's local data, not reused; the unchanged video is not copied again."""
    from savflow.train import data

    source, dest = storage.join(store_root, "raw"), storage.join(store_root, "staged")
    ids = write_raw_train_split(source, SyntheticSpec(num_videos=2, num_frames=16, height=32, width=32,
                                                      num_objects=1, seed=14))
    stage(source, dest, layout="tar", workers=1, progress=False)
    paths = savformat.split_paths(dest)

    def local_copy() -> data.LocalTrainData:
        src = data.describe_source(paths.frames, paths.annotations, None)
        return data.prepare_node_data(src, scratch=tmp_path / "scratch", node_leader=True, timeout_s=5)

    first = local_copy()
    assert len(list((first.img_folder / ids[0]).iterdir())) == 16
    kept = (first.root / markers.MARKER_DIR / f"{ids[1]}.json").stat().st_mtime_ns

    longer = storage.join(store_root, "longer")
    write_raw_train_split(longer, SyntheticSpec(num_videos=1, num_frames=40, height=32, width=32, num_objects=1,
                                                seed=14))
    for name in (f"{ids[0]}.mp4", f"{ids[0]}_manual.json"):
        storage.write_bytes(storage.join(source, name), storage.read_bytes(storage.join(longer, name)))
    restaged = stage(source, dest, layout="tar", workers=1, progress=False)
    assert (restaged.staged, restaged.skipped) == ([ids[0]], [ids[1]])

    with caplog.at_level("INFO", logger="savflow"):
        second = local_copy()
    assert second.root == first.root
    assert len(list((second.img_folder / ids[0]).iterdir())) == 40
    assert "1 to copy (1 staged again since copied)" in caplog.text
    assert (first.root / markers.MARKER_DIR / f"{ids[1]}.json").stat().st_mtime_ns == kept
