"""A seeded generator of SA-V-format data: textured objects moving over a textured background, exact masks.

Used by the tests, the benchmarks and the local demo, where no real SA-V videos can be downloaded. Objects
move on bouncing paths, change size slowly and occlude each other (a later object is drawn on top, and the
earlier object's mask loses the covered pixels), so the masks are exactly the visible pixels of each object.

Three outputs, each under a root URI:

* :func:`write_raw_train_split`: what SA-V train ships, ``sav_*.mp4`` (H.264, 24 fps) + ``sav_*_manual.json``;
* :func:`write_staged_train_split`: what staging produces for training,
  ``JPEGImages_24fps/{video}/{frame:05d}.jpg`` + ``annotations/{video}_manual.json``;
* :func:`write_val_split`: what SA-V val/test ship, ``JPEGImages_24fps`` + ``Annotations_6fps`` per-object PNGs.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from savflow.common import savformat, storage

FPS = 24


@dataclass(frozen=True)
class SyntheticSpec:
    """Size of a generated split. Height and width must be even (H.264 with 4:2:0 chroma)."""

    num_videos: int = 4
    num_frames: int = 48
    height: int = 128
    width: int = 128
    num_objects: int = 2
    seed: int = 0
    first_index: int = 1

    def video_ids(self) -> list[str]:
        return [f"sav_{self.first_index + i:06d}" for i in range(self.num_videos)]


@dataclass(frozen=True)
class SyntheticVideo:
    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    masks: np.ndarray  # (K, T, H, W) bool, visible pixels of each object


def _texture(rng: np.random.Generator, height: int, width: int, base: np.ndarray,
             amplitude: float = 40.0) -> np.ndarray:
    """Smooth colour noise around ``base`` plus stripes: enough structure for a model to latch onto."""
    coarse = rng.normal(0.0, amplitude, size=(height // 8 + 2, width // 8 + 2, 3))
    up = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 16)
    stripes = 0.75 * amplitude * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
    return np.clip(base[None, None, :] + up + stripes, 0, 255)


def generate_video(video_id: str, *, num_frames: int, height: int, width: int, num_objects: int,
                   seed: int) -> SyntheticVideo:
    """One video with ``num_objects`` objects (ellipses and rectangles) on bouncing paths."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, rng.uniform(60, 200, size=3), amplitude=15.0)
    shift = rng.normal(0, 0.6, size=2)  # slow camera pan, so the background moves too
    objects = []
    for k in range(num_objects):
        size = rng.uniform(0.18, 0.32) * min(height, width)
        objects.append({
            "shape": "ellipse" if k % 2 == 0 else "rect",
            "radius": np.array([size, size * rng.uniform(0.6, 1.0)]),
            "pos": rng.uniform([size, size], [height - size, width - size]),
            "vel": rng.normal(0, 1.0, size=2) * min(height, width) / 48,
            "growth": rng.uniform(-0.004, 0.004),
            "texture": _texture(rng, height, width, rng.uniform(0, 255, size=3)),
        })
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((num_objects, num_frames, height, width), dtype=bool)
    for t in range(num_frames):
        dy, dx = (shift * t).round().astype(int)
        frame = np.roll(background, (dy, dx), axis=(0, 1)).copy()
        for k, obj in enumerate(objects):
            r = obj["radius"] * (1 + obj["growth"] * t)
            cy, cx = obj["pos"]
            if obj["shape"] == "ellipse":
                inside = ((yy - cy) / r[0]) ** 2 + ((xx - cx) / r[1]) ** 2 <= 1.0
            else:
                inside = (np.abs(yy - cy) <= r[0] * 0.8) & (np.abs(xx - cx) <= r[1] * 0.8)
            frame[inside] = obj["texture"][inside]
            masks[:k, t] &= ~inside
            masks[k, t] = inside
            obj["pos"] = obj["pos"] + obj["vel"]
            for axis, limit in enumerate((height, width)):
                if not r[axis] * 0.5 <= obj["pos"][axis] <= limit - r[axis] * 0.5:
                    obj["vel"][axis] *= -1
                    obj["pos"][axis] = np.clip(obj["pos"][axis], r[axis] * 0.5, limit - r[axis] * 0.5)
        frames[t] = frame.astype(np.uint8)
    return SyntheticVideo(video_id, frames, masks)


def generate_split(spec: SyntheticSpec) -> list[SyntheticVideo]:
    return [
        generate_video(vid, num_frames=spec.num_frames, height=spec.height, width=spec.width,
                       num_objects=spec.num_objects, seed=spec.seed * 100_003 + i)
        for i, vid in enumerate(spec.video_ids())
    ]


def manual_json(video: SyntheticVideo) -> dict:
    """The SA-V ``*_manual.json`` of a generated video: RLE of every object on every 4th frame (an empty RLE
    where the object is hidden, as SA-V writes it)."""
    num_objects, num_frames, height, width = video.masks.shape
    masklet = [
        [savformat.encode_rle(video.masks[k, t]) for k in range(num_objects)]
        for t in range(0, num_frames, savformat.ANN_EVERY)
    ]
    per_frame = video.masks.reshape(num_objects, num_frames, -1).sum(-1)
    # as in SA-V: the mean area over the frames where the object is visible
    areas = [float(row[row > 0].mean()) if (row > 0).any() else 0.0 for row in per_frame]
    return {
        "video_id": video.video_id,
        "video_duration": num_frames / FPS,
        "video_frame_count": float(num_frames),
        "video_height": float(height),
        "video_width": float(width),
        "video_resolution": float(height * width),
        "video_environment": "Synthetic",
        "video_split": "train",
        "masklet": masklet,
        "masklet_id": list(range(num_objects)),
        "masklet_size_abs": areas,
        "masklet_size_bucket": [_size_bucket(a) for a in areas],
        "masklet_num": num_objects,
    }


def _size_bucket(area: float) -> str:
    """SA-V's buckets by mean area in pixels (COCO-style thresholds)."""
    return "small" if area < 32 ** 2 else "medium" if area < 96 ** 2 else "large"


def encode_mp4(frames: np.ndarray, *, fps: int = FPS, crf: int = 18) -> bytes:
    """H.264 (yuv420p) in an MP4 container, like the SA-V videos."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def encode_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_all(items: list[tuple[str, bytes]], workers: int = 8) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda item: storage.write_bytes(*item), items))


def write_raw_train_split(root: str, spec: SyntheticSpec) -> list[str]:
    """``{root}/sav_*.mp4`` + ``{root}/sav_*_manual.json``; returns the video ids."""
    items = []
    for video in generate_split(spec):
        items.append((storage.join(root, f"{video.video_id}.mp4"), encode_mp4(video.frames)))
        items.append((storage.join(root, f"{video.video_id}_manual.json"), json.dumps(manual_json(video)).encode()))
    _write_all(items)
    return spec.video_ids()


def _frame_items(root: str, video: SyntheticVideo) -> list[tuple[str, bytes]]:
    return [(storage.join(root, savformat.frames_path(video.video_id, t)), encode_jpeg(frame))
            for t, frame in enumerate(video.frames)]


def write_staged_train_split(root: str, spec: SyntheticSpec) -> list[str]:
    """What sam2's ``JSONRawDataset`` reads: frames, ``annotations/{video}_manual.json`` and ``file_list.txt``."""
    items = []
    for video in generate_split(spec):
        items += _frame_items(root, video)
        items.append((storage.join(root, savformat.annotation_path(video.video_id)),
                      json.dumps(manual_json(video)).encode()))
    items.append((storage.join(root, "file_list.txt"), savformat.format_video_list(spec.video_ids()).encode()))
    _write_all(items)
    return spec.video_ids()


def write_val_split(root: str, spec: SyntheticSpec) -> list[str]:
    """SA-V val/test layout: every frame as JPEG, every 4th frame's object masks as per-object PNGs, and a
    ``{root}/video_list.txt``."""
    items = []
    for video in generate_split(spec):
        items += _frame_items(root, video)
        ann = savformat.parse_manual_json(manual_json(video), file=f"<synthetic {video.video_id}>")
        items += [(storage.join(root, rel), png) for rel, png in savformat.manual_to_object_pngs(ann)]
    items.append((storage.join(root, "video_list.txt"), savformat.format_video_list(spec.video_ids()).encode()))
    _write_all(items)
    return spec.video_ids()


def write_local_mp4(path: Path, frames: np.ndarray) -> Path:
    """Write an MP4 to a local file (tests of decoders)."""
    path.write_bytes(encode_mp4(frames))
    return path
