"""One :class:`~savflow.importers.source.SourceVideo` written in the import layout (:mod:`.layout`).

* frames: JPEG files are copied byte for byte (no generation loss); other frames (PNG) are encoded as JPEG, since
  sam2's ``JSONRawDataset`` opens ``{frame:05d}.jpg`` and nothing else. Every frame must have the first one's size;
* the train annotation: masklet entry i is frame ``i * ann_every``; on an annotated frame every object has an RLE,
  an empty one where it is absent (sam2 drops from training every frame where any object is ``null``, so an
  object that appears later would otherwise take the frames before it with it); entries for frames on the grid
  that carry no masks are ``null`` (not annotated). The frame rate and stride are recorded in the file;
* the val layout: every object's binary PNG on every annotated frame, empty where it is absent (SA-V val's shape);
* with ``mp4``: the frames again as a lossless H.264 (RGB, qp 0) ``mp4/{video}.mp4`` next to a copy of the
  annotation, which is the raw SA-V train split ``savflow stage`` reads.

The video's old outputs are deleted first (a re-import may number frames differently) and the annotation, which
is what makes a video visible to training, is written last.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from savflow.common import savformat, storage
from savflow.importers import layout
from savflow.importers.source import SourceVideo, read_masks, stem

if TYPE_CHECKING:
    import numpy as np

_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class WriteOptions:
    dest: str
    ann_every: int
    val: bool = True
    mp4: bool = False
    jpeg_quality: int = 95
    scratch: Path | None = None


@dataclass
class Written:
    """What one video became."""

    video: str
    frames: int
    annotated: int
    objects: list[int]
    fps: float
    reencoded: int
    warnings: list[str] = field(default_factory=list)


def _bad(message: str, src: SourceVideo, file: str, what: str) -> savformat.SavFormatError:
    return savformat.SavFormatError(message, file=file, video=src.video, field=what)


def check_stride(src: SourceVideo, ann_every: int) -> None:
    """Every annotated frame must sit on the grid the masklet can express."""
    for frame in sorted(src.masks):
        if frame % ann_every:
            raise _bad(f"frame {frame} ({src.names[frame]}) is annotated, but annotations are written on every "
                       f"{ann_every}th frame (--ann-every)", src, src.masks[frame][0].uri, "ann_every")


def clear_video(video: str, dest: str) -> None:
    """Delete a video's outputs, the annotations first, so that no reader sees a half-replaced video (before a
    re-import, and after a failed one: a val-layout video with half its masks would be staged as it is)."""
    for name in (savformat.annotation_path(video), f"{layout.MP4_DIR}/{video}_manual.json",
                 f"{layout.MP4_DIR}/{video}.mp4"):
        storage.delete(storage.join(dest, name))
    for folder in (savformat.FRAMES_DIR, savformat.MASKS_DIR):
        storage.delete_prefix(storage.join(dest, folder, video))


def _frame(data: bytes, uri: str, src: SourceVideo, quality: int, pixels: bool) -> tuple[bytes, tuple[int, int],
                                                                                        np.ndarray | None, bool]:
    """A frame as JPEG bytes (the file itself when it is one), its (height, width), its RGB pixels when asked,
    and whether it was encoded here."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        shape = (image.height, image.width)
        is_jpeg = data.startswith(_JPEG_MAGIC) and image.format == "JPEG"
        rgb = image.convert("RGB") if pixels or not is_jpeg else None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _bad(f"cannot read the image: {exc}", src, uri, "frame") from exc
    if is_jpeg:
        return data, shape, None if rgb is None else np.asarray(rgb), False
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), shape, np.asarray(rgb) if pixels else None, True


class _Mp4:
    """A lossless H.264 stream in RGB (libx264rgb, qp 0): ``stage`` decodes exactly the source pixels."""

    def __init__(self, path: Path, fps: float) -> None:
        import av

        self.path = path
        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001))
        self.stream.pix_fmt = "rgb24"
        self.stream.options = {"qp": "0", "preset": "veryfast"}
        self.started = False

    def add(self, rgb: np.ndarray) -> None:
        import av

        if not self.started:
            self.stream.height, self.stream.width = rgb.shape[:2]
            self.started = True
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        """Drop a stream that will not be finished (the temporary folder goes with it)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - a stream that never started cannot be flushed; nothing to keep
            pass


def _write_frames(src: SourceVideo, opts: WriteOptions, mp4: _Mp4 | None) -> tuple[tuple[int, int], int]:
    shape, reencoded = None, 0
    for i, uri in enumerate(src.frames):
        jpeg, size, rgb, encoded = _frame(storage.read_bytes(uri), uri, src, opts.jpeg_quality, mp4 is not None)
        if shape is None:
            shape = size
        elif size != shape:
            raise _bad(f"frame is {size[1]}x{size[0]}, the first frame {shape[1]}x{shape[0]}", src, uri, "size")
        reencoded += encoded
        storage.write_bytes(storage.join(opts.dest, savformat.frames_path(src.video, i)), jpeg)
        if mp4 is not None:
            mp4.add(rgb)
    assert shape is not None
    return shape, reencoded


@dataclass
class _Masks:
    """The annotated frames' RLEs and per-object statistics, gathered in one pass over the mask files."""

    rles: dict[int, dict[int, dict]] = field(default_factory=dict)
    area: dict[int, float] = field(default_factory=dict)
    visible: dict[int, int] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)


def _read_all_masks(src: SourceVideo, opts: WriteOptions, shape: tuple[int, int]) -> _Masks:
    out = _Masks()
    for frame in sorted(src.masks):
        objects = read_masks(src.video, src.masks[frame], shape)
        out.rles[frame] = {}
        for obj, mask in sorted(objects.items()):
            if obj > 999:
                raise _bad(f"object id {obj} is over 999", src, src.masks[frame][0].uri, "masks")
            pixels = int(mask.sum())
            out.rles[frame][obj] = savformat.encode_rle(mask)
            out.area.setdefault(obj, 0.0)
            out.visible.setdefault(obj, 0)
            if pixels:
                out.area[obj] += pixels
                out.visible[obj] += 1
                out.first.setdefault(obj, frame)
            if opts.val:
                storage.write_bytes(storage.join(opts.dest, savformat.object_mask_path(src.video, obj, frame)),
                                    savformat.encode_object_png(mask))
    return out


def _annotation(src: SourceVideo, opts: WriteOptions, shape: tuple[int, int], masks: _Masks) -> dict[str, Any]:
    import numpy as np

    k, ids = opts.ann_every, sorted(masks.area)
    empty = savformat.encode_rle(np.zeros(shape, dtype=bool))
    masklet = []
    for i in range(max(masks.rles) // k + 1):
        found = masks.rles.get(i * k)
        masklet.append([None] * len(ids) if found is None else [found.get(obj, empty) for obj in ids])
    mean = [masks.area[obj] / masks.visible[obj] if masks.visible[obj] else 0.0 for obj in ids]
    height, width = shape
    doc: dict[str, Any] = {
        "video_id": src.video, "video_frame_count": len(src.frames), "video_height": height, "video_width": width,
        "video_resolution": height * width, "video_duration": len(src.frames) / src.fps,
        layout.FPS_KEY: src.fps, layout.STRIDE_KEY: k,
        "masklet": masklet, "masklet_id": ids, "masklet_num": len(ids),
        "masklet_first_appeared_frame": [masks.first.get(obj) for obj in ids],
        "masklet_frame_count": [masks.visible[obj] for obj in ids],
        "masklet_size_abs": mean, "masklet_size_bucket": [layout.size_bucket(a) for a in mean],
    }
    if src.categories:
        doc["masklet_category"] = [src.categories.get(obj, "") for obj in ids]
    if [stem(n) for n in src.names] != [f"{i:05d}" for i in range(len(src.names))]:
        doc[layout.SOURCE_FRAMES_KEY] = list(src.names)
    return doc


def _empty_pngs(src: SourceVideo, opts: WriteOptions, shape: tuple[int, int], masks: _Masks) -> None:
    """SA-V val's shape: every object has a PNG on every annotated frame, empty where it is absent."""
    import numpy as np

    png = savformat.encode_object_png(np.zeros(shape, dtype=bool))
    for frame, found in masks.rles.items():
        for obj in masks.area:
            if obj not in found:
                storage.write_bytes(storage.join(opts.dest, savformat.object_mask_path(src.video, obj, frame)), png)


def write_video(src: SourceVideo, opts: WriteOptions) -> Written:
    """Write one video; a problem with its files is a :class:`~savflow.common.savformat.SavFormatError` naming
    the file, the video and the field."""
    check_stride(src, opts.ann_every)
    clear_video(src.video, opts.dest)
    with tempfile.TemporaryDirectory(prefix="savflow-import-", dir=opts.scratch) as tmp:
        mp4 = _Mp4(Path(tmp) / f"{src.video}.mp4", src.fps) if opts.mp4 else None
        try:
            shape, reencoded = _write_frames(src, opts, mp4)
        except BaseException:
            if mp4 is not None:
                mp4.abort()
            raise
        if mp4 is not None:
            mp4.close()
        masks = _read_all_masks(src, opts, shape)
        if not any(masks.visible.values()):
            raise _bad("no object is visible in any mask", src, src.masks[min(src.masks)][0].uri, "masks")
        if opts.val:
            _empty_pngs(src, opts, shape, masks)
        doc = _annotation(src, opts, shape, masks)
        data = json.dumps(doc).encode()
        layout.parse_annotation(doc, file=savformat.annotation_path(src.video), ann_every=opts.ann_every)
        if mp4 is not None:
            storage.upload_file(mp4.path, storage.join(opts.dest, layout.MP4_DIR, f"{src.video}.mp4"))
            storage.write_bytes(storage.join(opts.dest, layout.MP4_DIR, f"{src.video}_manual.json"), data)
    storage.write_bytes(storage.join(opts.dest, savformat.annotation_path(src.video)), data)
    warnings = [f"object {obj} ({name or 'listed'}) has no pixels in any mask" for obj, name in
                sorted(src.categories.items()) if obj not in masks.area]
    warnings += [f"object {obj} is empty in every mask" for obj, n in sorted(masks.visible.items()) if not n]
    return Written(src.video, len(src.frames), len(src.masks), sorted(masks.area), src.fps, reencoded, warnings)
