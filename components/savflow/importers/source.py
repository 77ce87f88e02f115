"""What a format reader hands the writer: one video's frames, its mask files and its frame rate.

Readers work from listings only (one recursive listing per folder, no file read), so a whole dataset is
described before anything is written: the annotation stride is a property of the dataset (sam2's config has one
``ann_every`` for all videos), found from every video's annotated frames (:func:`dataset_stride`). The masks are
read when the writer gets to the video (:func:`read_masks`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Protocol

from savflow.common import savformat, storage

if TYPE_CHECKING:
    import numpy as np

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_SUFFIXES = (".jpg", ".jpeg")
VOID = 255  # DAVIS-style palettes mark "ignore" pixels (object borders) with 255; not an object


class SourceError(ValueError):
    """``--source`` holds nothing this format can read (a usage error: exit status 2)."""


@dataclass(frozen=True)
class MaskFile:
    """One mask file: a palette PNG holding every object of a frame (``obj`` None: value v is object v - 1, the
    0-based ids of SA-V's folders), or one object's binary PNG (any non-zero pixel is the object)."""

    uri: str
    obj: int | None = None


@dataclass(frozen=True)
class SourceVideo:
    """One video as a reader found it. Output frame ``i`` is ``frames[i]``; ``masks`` maps an output frame to
    its mask files; ``names`` are the source frames' names (kept in the annotation when they are not 0..N-1);
    ``categories`` names objects where the source does (YouTube-VOS ``meta.json``)."""

    video: str
    frames: list[str]
    names: list[str]
    masks: dict[int, list[MaskFile]]
    fps: float
    categories: dict[int, str] = field(default_factory=dict)


class Reader(Protocol):
    """A format: the videos it found under the source, and one of them as a :class:`SourceVideo`."""

    def videos(self) -> list[str]: ...

    def video(self, name: str) -> SourceVideo: ...


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sort key that puts ``frame_2`` before ``frame_10`` (annotation tools rarely pad their numbers)."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


def stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""


def group_by_video(names: Iterable[str]) -> dict[str, list[str]]:
    """``video/rest`` listing names -> ``{video: [rest, ...]}`` (files directly under the root are left out)."""
    out: dict[str, list[str]] = {}
    for name in names:
        if "/" in name:
            video, rest = name.split("/", 1)
            out.setdefault(video, []).append(rest)
    return out


def frame_files(video: str, folder: str, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """The frame files among ``names`` (relative to the video's ``folder``) in natural order: their URIs and
    names. Files of other kinds (thumbnails, ``.DS_Store``) are left out; none at all is an error."""
    frames = sorted((n for n in names if "/" not in n and suffix(n) in FRAME_SUFFIXES), key=natural_key)
    if not frames:
        raise savformat.SavFormatError(f"no frames ({', '.join(FRAME_SUFFIXES)})", file=folder, video=video,
                                       field="frames")
    return [storage.join(folder, n) for n in frames], frames


def index_by_stem(video: str, names: list[str], folder: str) -> dict[str, int]:
    """Frame stem -> output index; two frames with one stem (``0001.jpg`` and ``0001.png``) are an error."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if stem(name) in index:
            raise savformat.SavFormatError(f"two frames named {stem(name)!r}", file=storage.join(folder, name),
                                           video=video, field="frames")
        index[stem(name)] = i
    return index


def frame_of_mask(video: str, mask_uri: str, frames: dict[str, int]) -> int:
    """The output frame a mask file belongs to (same stem as a frame), or an error naming the mask."""
    try:
        return frames[stem(mask_uri)]
    except KeyError:
        raise savformat.SavFormatError(f"a mask for frame {stem(mask_uri)!r}, which has no frame file",
                                       file=mask_uri, video=video, field="frame") from None


def stride_of(frames: Iterable[int]) -> int:
    """The largest stride that puts every annotated frame on the grid 0, k, 2k, ... (0: only frame 0, or none).
    SA-V is annotated on every 4th frame, DAVIS on every frame, YouTube-VOS on every 5th of its 30 fps video."""
    out = 0
    for f in frames:
        out = math.gcd(out, f)
    return out


def dataset_stride(videos: Iterable[SourceVideo]) -> int:
    """One stride for the whole dataset (sam2's config has one ``ann_every``); 1 when no video tells."""
    return stride_of(f for v in videos for f in v.masks) or 1


def read_masks(video: str, files: list[MaskFile], shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """The object masks of one frame, ``{obj: (H, W) bool}``; a mask whose size is not the frame's ``shape``
    (height, width) is an error naming the file, as is any mode other than grey, palette or 1-bit."""
    out: dict[int, np.ndarray] = {}
    for mask in files:
        label = savformat.decode_png(storage.read_bytes(mask.uri), file=mask.uri, video=video)
        if label.shape != shape:
            raise savformat.SavFormatError(
                f"mask is {label.shape[1]}x{label.shape[0]}, the frames are {shape[1]}x{shape[0]}", file=mask.uri,
                video=video, field="size")
        if mask.obj is not None:
            out[mask.obj] = out[mask.obj] | (label > 0) if mask.obj in out else label > 0
            continue
        for obj, m in palette_objects(label).items():
            out[obj] = out[obj] | m if obj in out else m
    return out


def palette_objects(label: np.ndarray) -> dict[int, np.ndarray]:
    """A palette or grey label map -> ``{obj: mask}``, value v being object v - 1. A map holding only 0 and 255
    is one binary mask (DAVIS 2016, most tools' exports): object 0; elsewhere 255 is DAVIS's void border."""
    import numpy as np

    values = set(np.unique(label).tolist()) - {0}
    if values == {VOID}:
        return {0: label == VOID}
    return savformat.palette_to_objects(np.where(label == VOID, 0, label))
