"""Small synthetic datasets in each source layout ``savflow import`` reads, with the true masks returned.

Built on :mod:`savflow.common.demo_data`'s generator (textured objects on bouncing paths, exact visible-pixel
masks), so the tests, and demos of the import path, need no downloaded dataset. Each writer returns
``{video: SyntheticVideo}`` holding exactly the masks it wrote: the last object is hidden before
``appears_at`` (an object that appears later), and only the annotated frames carry mask files.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from savflow.common import savformat, storage
from savflow.common.demo_data import SyntheticSpec, SyntheticVideo, encode_jpeg, generate_split


def _videos(spec: SyntheticSpec, appears_at: int) -> dict[str, SyntheticVideo]:
    """The spec's videos, the last object (of two or more) absent before frame ``appears_at``."""
    out = {}
    for video in generate_split(spec):
        masks = video.masks.copy()
        if masks.shape[0] > 1 and appears_at:
            masks[-1, :appears_at] = False
        out[video.video_id] = replace(video, masks=masks)
    return out


def _label(video: SyntheticVideo, t: int) -> np.ndarray:
    return savformat.objects_to_palette({k: video.masks[k, t] for k in range(video.masks.shape[0])})


def _png(mask: np.ndarray) -> bytes:
    """A binary mask as an 8-bit grey PNG of 0 and 255, as annotation tools export them."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _image(frame: np.ndarray, fmt: str) -> bytes:
    if fmt == "jpg":
        return encode_jpeg(frame)
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def write_davis(root: str, spec: SyntheticSpec, *, ann_every: int = 1, resolution: str = "480p",
                appears_at: int = 4) -> dict[str, SyntheticVideo]:
    """``JPEGImages/{resolution}/{video}/{i:05d}.jpg`` + a palette PNG on every ``ann_every``-th frame
    (``resolution=""``: MOSE's and LVOS's layout, without the level)."""
    videos = _videos(spec, appears_at)
    for vid, video in videos.items():
        for t, frame in enumerate(video.frames):
            storage.write_bytes(storage.join(root, "JPEGImages", resolution, vid, f"{t:05d}.jpg"), encode_jpeg(frame))
            if t % ann_every == 0:
                storage.write_bytes(storage.join(root, "Annotations", resolution, vid, f"{t:05d}.png"),
                                    savformat.encode_palette_png(_label(video, t)))
    return videos


def write_ytvos(root: str, spec: SyntheticSpec, *, step: int = 5, ann_every: int = 1,
                appears_at: int = 3) -> dict[str, SyntheticVideo]:
    """YouTube-VOS: frame t named ``{t * step:05d}.jpg`` (the usual release keeps every 5th frame of the
    30 fps video), a palette PNG on every ``ann_every``-th of them, and ``meta.json`` with categories and each
    object's frames."""
    videos = _videos(spec, appears_at)
    meta: dict[str, dict] = {}
    for vid, video in videos.items():
        objects = {}
        for k in range(video.masks.shape[0]):
            frames = [f"{t * step:05d}" for t in range(0, len(video.frames), ann_every) if video.masks[k, t].any()]
            objects[str(k + 1)] = {"category": f"thing{k}", "frames": frames}
        meta[vid] = {"objects": objects}
        for t, frame in enumerate(video.frames):
            storage.write_bytes(storage.join(root, "JPEGImages", vid, f"{t * step:05d}.jpg"), encode_jpeg(frame))
            if t % ann_every == 0:
                storage.write_bytes(storage.join(root, "Annotations", vid, f"{t * step:05d}.png"),
                                    savformat.encode_palette_png(_label(video, t)))
    storage.write_text(storage.join(root, "meta.json"), json.dumps({"videos": meta}))
    return videos


def write_sav_val(root: str, spec: SyntheticSpec, *, ann_every: int = savformat.ANN_EVERY,
                  appears_at: int = 8) -> dict[str, SyntheticVideo]:
    """SA-V val: every frame as JPEG, every object's binary PNG on every ``ann_every``-th frame (empty where it
    is absent)."""
    videos = _videos(spec, appears_at)
    for vid, video in videos.items():
        for t, frame in enumerate(video.frames):
            storage.write_bytes(storage.join(root, savformat.frames_path(vid, t)), encode_jpeg(frame))
            if t % ann_every == 0:
                for k in range(video.masks.shape[0]):
                    storage.write_bytes(storage.join(root, savformat.object_mask_path(vid, k, t)),
                                        savformat.encode_object_png(video.masks[k, t]))
    return videos


def write_frames_masks(root: str, spec: SyntheticSpec, *, ann_every: int = 2, frame_format: str = "png",
                       objects: tuple[str, ...] = ("cat", "dog"), appears_at: int = 4) -> dict[str, SyntheticVideo]:
    """An annotation tool's export: ``{video}/frames/frame_{t}.{png|jpg}`` (unpadded numbers) and
    ``{video}/masks/{object name}/frame_{t}.png`` (0/255 grey) on every ``ann_every``-th frame where the object
    is visible."""
    videos = _videos(replace(spec, num_objects=len(objects)), appears_at)
    for vid, video in videos.items():
        for t, frame in enumerate(video.frames):
            storage.write_bytes(storage.join(root, vid, "frames", f"frame_{t}.{frame_format}"),
                                _image(frame, frame_format))
            if t % ann_every:
                continue
            for k, name in enumerate(objects):
                if video.masks[k, t].any():
                    storage.write_bytes(storage.join(root, vid, "masks", name, f"frame_{t}.png"),
                                        _png(video.masks[k, t]))
    return videos
