"""Bad media in a run over several videos: mp4s for train staging (empty, garbage, only a header, audio only,
truncated mid-GOP at generated offsets, the wrong resolution), mask PNGs for val staging and for inference
prompts. Each bad video is reported (stage report / inference FailureReport) with a reason naming the file and
what is wrong, and the other videos of the run finish."""

from __future__ import annotations

import functools
import io
import json
import re
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import reliability
from savflow.common import markers, savformat
from savflow.common.demo_data import SyntheticSpec, generate_video, write_raw_train_split, write_val_split
from savflow.stage.decode import SampledFrames, VideoDecodeError
from savflow.stage.stage import stage

FRAMES, SIZE = 48, 64
SPEC = SyntheticSpec(num_videos=2, num_frames=FRAMES, height=SIZE, width=SIZE, num_objects=1, seed=11)
REPORT = "_reports/stage-shard-0-of-1.json"


def write_mp4(path: Path, frames: np.ndarray | None, *, audio: bool = False) -> bytes:
    """H.264 with a keyframe every 12 frames and the index (moov) at the front, so that a cut file still opens
    and is cut inside a GOP; ``frames=None`` writes no video stream, ``audio`` adds a silent AAC one."""
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        video = None
        if frames is not None:
            video = container.add_stream("libx264", rate=24)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            video.options = {"crf": "18", "preset": "veryfast", "g": "12"}
        if audio:
            sound = container.add_stream("aac", rate=48000)
            for i in range(20):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, i * 1024
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
        if video is not None:
            for frame in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
    return path.read_bytes()


def frames_of(video: str, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return generate_video(video, num_frames=FRAMES, height=height, width=width, num_objects=1, seed=3).frames


@functools.cache
def _good_mp4() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_mp4(Path(tmp) / "good.mp4", frames_of("v"))


@pytest.fixture
def good_mp4() -> bytes:
    return _good_mp4()


def _mdat(data: bytes) -> int:
    """Where the sample data starts."""
    return data.index(b"mdat") + 4


# ---- SampledFrames on generated cuts: a truncated file never passes as whole


@settings(max_examples=15, deadline=None)
@given(data=st.data(), rate=st.sampled_from([1, 4]))
def test_truncated_mp4_never_decodes_whole(data: st.DataObject, rate: int) -> None:
    """Cut anywhere (in the header, inside a GOP): the decoder raises naming the file, or gives fewer frames
    than there are (which the stager reports against video_frame_count)."""
    good_mp4 = _good_mp4()
    cut = data.draw(st.one_of(st.integers(0, _mdat(good_mp4)), st.integers(_mdat(good_mp4), len(good_mp4) - 1)),
                    label="cut")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.mp4"
        path.write_bytes(good_mp4[:cut])
        frames = SampledFrames(path, rate, name="gs://b/raw/sav_000009.mp4")
        try:
            indices = [index for index, _ in frames]
        except VideoDecodeError as exc:
            assert str(exc).startswith("gs://b/raw/sav_000009.mp4: "), str(exc)
            if cut > _mdat(good_mp4):
                assert "truncated" in str(exc) or "missing from the decoder's output" in str(exc), str(exc)
            return
    assert frames.count_final and 0 < frames.frame_count < FRAMES and len(indices) <= frames.frame_count


@settings(max_examples=15, deadline=None)
@given(blob=st.binary(max_size=2000), rate=st.sampled_from([1, 4]))
def test_garbage_bytes_are_a_decode_error_naming_the_file(blob: bytes, rate: int) -> None:
    """Mostly "cannot open"; bytes FFmpeg takes for an image (a PNG or JPEG signature) fail on their frame."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.mp4"
        path.write_bytes(blob)
        with pytest.raises(VideoDecodeError, match=r"^gs://b/g\.mp4: (cannot open|no video|frame \d+: decode failed)"):
            list(SampledFrames(path, rate, name="gs://b/g.mp4"))


def test_only_a_header_and_audio_only_are_named(good_mp4: bytes, tmp_path: Path) -> None:
    path = tmp_path / "h.mp4"
    path.write_bytes(good_mp4[:_mdat(good_mp4)])
    with pytest.raises(VideoDecodeError, match=r"h\.mp4: no video frames \(the container's index lists 48 frames: "
                                               r"the file is truncated\)"):
        list(SampledFrames(path, 4))
    write_mp4(path, None, audio=True)
    with pytest.raises(VideoDecodeError, match=r"h\.mp4: no video stream \(streams: audio\)"):
        list(SampledFrames(path, 1))
    path.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"h\.mp4: cannot open: empty file \(0 bytes\)"):
        list(SampledFrames(path, 1))


def test_cut_inside_the_last_frame_never_passes_as_whole(good_mp4: bytes, tmp_path: Path) -> None:
    """The index lists every frame, so a count taken from it agrees with the annotation: skipping frames (where
    the last frame is not decoded at all), the cut frame is an error; decoding all, the frames that come out are
    short of the index, or it is an error too."""
    path = tmp_path / "t.mp4"
    path.write_bytes(good_mp4[:-3])
    cut = r"incomplete data at byte \d+: the file ends inside this frame \(the container's index lists 48 frames"
    with pytest.raises(VideoDecodeError, match=rf"t\.mp4: frame 47: {cut}"):
        list(SampledFrames(path, 4))
    frames = SampledFrames(path, 1)
    try:
        list(frames)
    except VideoDecodeError as exc:
        assert re.search(rf"t\.mp4: {cut}", str(exc)), str(exc)
    else:
        assert frames.frame_count < FRAMES == frames.declared_frames and frames.truncated_at is not None


# ---- stage: each bad video is in the shard's report, the others are staged


def _bad_train_split(root: Path) -> tuple[list[str], list[str], dict[str, tuple[set[str], list[str]]]]:
    """Two good videos and one of each kind of bad mp4; returns (good ids, the two cut inside a frame (mid-GOP,
    the last frame), {bad id: (stages, reason parts)})."""
    good = write_raw_train_split(str(root), SPEC)
    bad = write_raw_train_split(str(root), SyntheticSpec(num_videos=7, num_frames=FRAMES, height=SIZE, width=SIZE,
                                                         num_objects=1, seed=12, first_index=3))
    whole = write_mp4(root / "whole.mp4", frames_of("x"))
    (root / "whole.mp4").unlink()
    mp4s = {bad[0]: b"", bad[1]: np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
            bad[2]: whole[:_mdat(whole)], bad[5]: whole[:(_mdat(whole) + len(whole)) // 2], bad[6]: whole[:-5]}
    for video, data in mp4s.items():
        (root / f"{video}.mp4").write_bytes(data)
    write_mp4(root / f"{bad[3]}.mp4", None, audio=True)
    write_mp4(root / f"{bad[4]}.mp4", frames_of("y", height=48))
    expected = {
        bad[0]: ({"decode"}, ["cannot open: empty file (0 bytes)"]),
        bad[1]: ({"decode"}, ["cannot open: "]),
        bad[2]: ({"decode"}, ["no video frames (the container's index lists 48 frames: the file is truncated)"]),
        bad[3]: ({"decode"}, ["no video stream (streams: audio)"]),
        bad[4]: ({"frame-size"}, ["frames are 64x48, but", f"{bad[4]}_manual.json says video_width x video_height "
                                                          "64x64"]),
        bad[5]: ({"decode", "frame-count"}, []),  # the cut frame, or the frames short of the index (see below)
        bad[6]: ({"decode", "frame-count"}, []),
    }
    return good, bad[5:], expected


@pytest.mark.parametrize("rate", [1, 4])
def test_bad_mp4s_are_reported_and_the_rest_staged(tmp_path: Path, rate: int) -> None:
    source, dest = tmp_path / "raw", tmp_path / "staged"
    good, cut, expected = _bad_train_split(source)
    result = stage(str(source), str(dest), sample_rate=rate, workers=2, progress=False, max_failures=len(expected))
    assert result.exit_code == 0 and result.staged == good and sorted(markers.done_units(str(dest))) == good
    report = json.loads((dest / REPORT).read_text())
    assert (report["total"], report["done"], report["failed"]) == (len(good) + len(expected), 2, len(expected))
    got = {f["video"]: (f["stage"], f["reason"]) for f in report["failures"]}
    assert set(got) == set(expected)
    for video, (stages, parts) in expected.items():
        step, reason = got[video]
        reliability.bad_input("stage", rejected_with_name=step in stages and all(p in reason for p in parts))
        assert step in stages and reason.startswith(f"{source}/{video}.mp4: "), (video, step, reason)
        assert all(part in reason for part in parts), (video, reason)
    for video in cut:
        step, reason = got[video]
        assert ("video_frame_count 48" if step == "frame-count" else "the file is truncated") in reason, reason


@settings(max_examples=10, deadline=None)
@given(data=st.data(), rate=st.sampled_from([1, 4]))
def test_truncated_mp4_at_any_offset_is_reported_and_the_other_staged(data: st.DataObject, rate: int) -> None:
    cut = data.draw(st.integers(0, len(_good_mp4()) - 1), label="cut")
    with tempfile.TemporaryDirectory() as tmp:
        source, dest = Path(tmp) / "raw", Path(tmp) / "staged"
        good, bad = write_raw_train_split(str(source), SPEC)
        mp4 = source / f"{bad}.mp4"
        mp4.write_bytes(write_mp4(mp4, frames_of(bad))[:cut])
        result = stage(str(source), str(dest), sample_rate=rate, workers=1, progress=False)
        report = json.loads((dest / REPORT).read_text())
    [failure] = report["failures"]
    reliability.bad_input("stage", rejected_with_name=failure["video"] == bad
                          and failure["reason"].startswith(f"{mp4}: ") and result.staged == [good])
    assert result.staged == [good] and result.exit_code == 1
    assert failure["video"] == bad and failure["reason"].startswith(f"{mp4}: "), failure
    assert failure["stage"] in ("decode", "frame-count"), failure
    if failure["stage"] == "frame-count":
        assert f"{bad}_manual.json says video_frame_count {FRAMES}" in failure["reason"], failure


# ---- val/test staging copies PNGs byte for byte: what it checks, and what it cannot see yet


def _val_split(root: Path) -> list[str]:
    return write_val_split(str(root), SyntheticSpec(num_videos=3, num_frames=8, height=SIZE, width=SIZE,
                                                    num_objects=1, seed=13))


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0 a JPEG, say", b"GIF89a"], ids=["empty", "jpeg", "gif"])
def test_val_mask_that_is_not_a_png_is_reported(tmp_path: Path, data: bytes) -> None:
    ids = _val_split(tmp_path / "raw")
    bad = tmp_path / "raw" / savformat.object_mask_path(ids[1], 0, 4)
    bad.write_bytes(data)
    result = stage(str(tmp_path / "raw"), str(tmp_path / "staged"), workers=2, progress=False)
    assert result.staged == [ids[0], ids[2]]
    [failure] = result.failures
    assert (failure.video, failure.stage) == (ids[1], "copy") and failure.reason.startswith(f"{bad}: ")
    assert "not a PNG" in failure.reason or data == b"" and "empty file" in failure.reason, failure.reason


def _rgb(mask: bytes) -> bytes:
    """The same mask as an RGB PNG (what an image editor might save)."""
    values = savformat.decode_object_png(mask).astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(np.stack([values] * 3, -1)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["truncated", "RGB"])
def test_val_mask_truncated_or_in_a_wrong_mode_is_reported(tmp_path: Path, kind: str) -> None:
    ids = _val_split(tmp_path / "raw")
    bad = tmp_path / "raw" / savformat.object_mask_path(ids[1], 0, 4)
    good = bad.read_bytes()
    bad.write_bytes(good[:len(good) // 2] if kind == "truncated" else _rgb(good))
    result = stage(str(tmp_path / "raw"), str(tmp_path / "staged"), workers=2, progress=False)
    assert result.staged == [ids[0], ids[2]]
    [failure] = result.failures
    reliability.bad_input("stage", rejected_with_name=failure.video == ids[1] and str(bad) in failure.reason)
    assert failure.video == ids[1] and str(bad) in failure.reason
    assert ("truncated" if kind == "truncated" else "mode RGB, want L or P") in failure.reason


def test_check_mask_png_names_file_video_and_field(tmp_path: Path) -> None:
    """What ValVideos calls on each PNG it copies: no decoding, the file, video and field named."""
    ids = _val_split(tmp_path)
    path = tmp_path / savformat.object_mask_path(ids[1], 0, 4)
    good = path.read_bytes()
    assert savformat.check_mask_png(good).mode == "P"
    for data, what in ((good[:len(good) // 2], "truncated"), (_rgb(good), "mode RGB, want L or P")):
        with pytest.raises(savformat.SavFormatError, match=f"^{path}: video {ids[1]}: field [A-Za-z]+: .*{what}"):
            savformat.check_mask_png(data, file=str(path), video=ids[1])


# ---- inference: a bad prompt mask is in the FailureReport, the other videos are segmented


class FakeVideoPredictor:
    """sam2's video predictor API, answering every frame with the prompt masks (no model)."""

    def init_state(self, video_path: str) -> dict:
        jpegs = sorted(Path(video_path).glob("*.jpg"))
        width, height = Image.open(jpegs[0]).size
        return {"video_height": height, "video_width": width, "num_frames": len(jpegs), "masks": {}}

    def reset_state(self, state: dict) -> None:
        state["masks"].clear()

    def add_new_mask(self, inference_state: dict, frame_idx: int, obj_id: int, mask: np.ndarray) -> None:
        inference_state["masks"][obj_id] = mask

    def propagate_in_video(self, state: dict, start_frame_idx: int = 0):
        import torch

        ids = sorted(state["masks"])
        logits = torch.stack([torch.as_tensor(state["masks"][o], dtype=torch.float32) * 2 - 1 for o in ids])[:, None]
        for idx in range(start_frame_idx, state["num_frames"]):
            yield idx, ids, logits


def test_bad_prompt_masks_are_reported_and_the_rest_segmented(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from savflow.infer import infer as infer_module
    from savflow.infer.predictor import LoadedPredictor

    monkeypatch.setattr(infer_module, "build_predictor", lambda *args, **kwargs: LoadedPredictor(
        FakeVideoPredictor(), torch.device("cpu"), compiled=False, hole_filling=False))
    root = tmp_path / "val"
    ids = write_val_split(str(root), SyntheticSpec(num_videos=5, num_frames=8, height=SIZE, width=SIZE,
                                                   num_objects=1, seed=14))
    prompt = {v: root / savformat.object_mask_path(v, 0, 0) for v in ids}
    good = prompt[ids[0]].read_bytes()
    label = np.zeros((SIZE, SIZE), np.uint8)
    label[5:20, 5:20], label[8, 8] = 1, 2
    prompt[ids[1]].write_bytes(good[:len(good) // 2])
    prompt[ids[2]].write_bytes(_rgb(good))
    prompt[ids[3]].write_bytes(savformat.encode_object_png(np.ones((SIZE, SIZE + 16), bool)))
    prompt[ids[4]].write_bytes(savformat.encode_palette_png(label))
    pred = tmp_path / "pred"
    result = infer_module.infer("", "unused", str(root / savformat.FRAMES_DIR), str(root / savformat.MASKS_DIR),
                                str(pred), device="cpu", max_failures=4, workers=2)
    assert result.exit_code == 0 and result.report.done == 1 and markers.done_units(str(pred)) == {ids[0]}
    got = {f.video: (f.stage, f.reason) for f in result.report.failures}
    expected = {ids[1]: "field PLTE: truncated", ids[2]: "field mode: mode RGB, want L or P",
                ids[3]: "field mask size: mask is 64x80, the frames are 64x64",
                ids[4]: "field values: values [0, 1, 2]"}
    assert set(got) == set(expected)
    for video, what in expected.items():
        step, reason = got[video]
        assert step == "segment" and f"{video}/000/00000.png: video {video}: {what}" in reason, reason
    report = json.loads(Path(result.report_uri).read_text())
    assert {f["video"] for f in report["failures"]} == set(expected)
