"""Streaming decode for staging: sampling, frame counts, pixels against cv2.VideoCapture, broken files."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from savflow.common.demo_data import generate_video, write_local_mp4
from savflow.stage.decode import SampledFrames, VideoDecodeError, encode_jpeg, timestamp_grid
from savflow.stage.ordered_map import ordered_map

REAL_CLIP = Path(__file__).parents[1] / "data" / "videos" / "03_blocks.mp4"


@pytest.fixture(scope="module")
def synthetic_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    video = generate_video("sav_000001", num_frames=30, height=96, width=128, num_objects=2, seed=3)
    return write_local_mp4(tmp_path_factory.mktemp("mp4") / "v.mp4", video.frames)


def cv2_frames(path: Path) -> list[np.ndarray]:
    """The independent reference: every frame as cv2.VideoCapture decodes it (BGR)."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


@pytest.mark.parametrize("rate", [1, 4, 7])
def test_sampling_counts_every_frame_and_keeps_every_sth(synthetic_mp4: Path, rate: int) -> None:
    frames = SampledFrames(synthetic_mp4, rate)
    indices = [index for index, _ in frames]
    assert indices == list(range(0, 30, rate))
    assert frames.frame_count == 30
    assert (frames.width, frames.height) == (128, 96)
    assert frames.fps == pytest.approx(24.0)


@pytest.mark.parametrize("rate", [1, 2, 4])
def test_jpegs_are_bytewise_what_cv2_videocapture_and_imencode_give(synthetic_mp4: Path, rate: int) -> None:
    """Rates above 1 take the frame-skipping path (the synthetic H.264 has non-reference B-frames)."""
    reference = cv2_frames(synthetic_mp4)
    assert len(reference) == 30
    for index, frame in SampledFrames(synthetic_mp4, rate):
        ok, expected = cv2.imencode(".jpg", reference[index], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok and encode_jpeg(frame, 90) == expected.tobytes()


def test_real_clip_frames_match_cv2_and_colour_tags_are_honoured(tmp_path: Path) -> None:
    """The HD clip is tagged BT.709; a plain BT.601 conversion would differ by several levels."""
    cap = cv2.VideoCapture(str(REAL_CLIP))
    ok, first = cap.read()
    assert ok
    index, frame = next(iter(SampledFrames(REAL_CLIP, 4)))
    assert index == 0
    ours = cv2.imdecode(np.frombuffer(encode_jpeg(frame, 100), np.uint8), cv2.IMREAD_COLOR)
    ok, ref_jpeg = cv2.imencode(".jpg", first, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert np.array_equal(ours, cv2.imdecode(ref_jpeg, cv2.IMREAD_COLOR))


def test_frame_count_is_final_early_when_the_grid_is_known(synthetic_mp4: Path) -> None:
    sampled = SampledFrames(synthetic_mp4, 4)
    it = iter(sampled)
    next(it)
    assert (sampled.count_final, sampled.frame_count) == (True, 30)  # known before decoding the rest
    streamed = SampledFrames(synthetic_mp4, 1)
    it = iter(streamed)
    next(it)
    assert (streamed.count_final, streamed.frame_count) == (False, 1)
    list(it)
    assert (streamed.count_final, streamed.frame_count) == (True, 30)


def test_timestamp_grid_of_constant_and_variable_frame_rate(synthetic_mp4: Path, tmp_path: Path) -> None:
    grid = timestamp_grid(synthetic_mp4)
    assert grid is not None and sorted(grid.values()) == list(range(30))
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 24)
        for pts in (0, 1, 3, 4, 5, 8):  # gaps: a variable frame rate
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), pts * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 24)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert timestamp_grid(path) is None
    frames = SampledFrames(path, 2)
    assert [index for index, _ in frames] == [0, 2, 4] and frames.frame_count == 6


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"this is not an mp4" * 100)
    with pytest.raises(VideoDecodeError, match="x.mp4: cannot open"):
        list(SampledFrames(path, 1))


def test_truncated_mp4_with_index_at_the_end(synthetic_mp4: Path, tmp_path: Path) -> None:
    data = synthetic_mp4.read_bytes()
    path = tmp_path / "t.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cannot open"):
        list(SampledFrames(path, 1, name="gs://b/t.mp4"))


def test_corrupt_bytes_in_real_clip_are_detected(tmp_path: Path) -> None:
    data = bytearray(REAL_CLIP.read_bytes())
    start = data.find(b"mdat") + 2000
    rng = np.random.default_rng(0)
    for k in range(5):
        data[start + k * 3000: start + k * 3000 + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    path = tmp_path / "c.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match=r"c.mp4: frame 0: corrupt"):
        list(SampledFrames(path, 4))


def test_ordered_map_keeps_order_and_bounds_items_in_flight() -> None:
    taken = 0
    lock = threading.Lock()

    def items():
        nonlocal taken
        for i in range(40):
            with lock:
                taken += 1
            yield i

    def slow(i: int) -> int:
        time.sleep(0.002 * (i % 3))
        return i * i

    seen = []
    with ThreadPoolExecutor(4) as pool:
        for k, value in enumerate(ordered_map(pool, slow, items(), max_in_flight=5)):
            assert taken - k <= 5  # never more than 5 taken but not yet returned
            seen.append(value)
    assert seen == [i * i for i in range(40)]


def test_ordered_map_raises_the_first_error_in_order() -> None:
    def fn(i: int) -> int:
        if i == 3:
            raise KeyError(i)
        return i

    with ThreadPoolExecutor(2) as pool:
        out = []
        with pytest.raises(KeyError):
            for value in ordered_map(pool, fn, range(10), max_in_flight=4):
                out.append(value)
    assert out == [0, 1, 2]
