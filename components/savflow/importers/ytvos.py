"""YouTube-VOS: ``meta.json`` + ``JPEGImages/{video}/*.jpg`` + ``Annotations/{video}/*.png``.

The frames are named by their index in the 30 fps video; the usual release keeps every 5th (``00000.jpg``,
``00005.jpg``, ...), each with a palette PNG (the "all frames" release has every frame and still a PNG on every
5th). Output frames are numbered 0..N-1 in that order, so the frame rate recorded is 30 / the naming step
(6 fps) and ``ann_every`` comes from which of them have PNGs (1, or 5 for "all frames"). Objects appear later in
the video: an object's frames before its first appearance are written as empty masks (not ``null``, which would
make sam2 drop the whole frame from training), and its first frame is recorded
(``masklet_first_appeared_frame``). ``meta.json`` adds the object categories.
"""

from __future__ import annotations

import dataclasses
import json

from savflow.common import savformat, storage
from savflow.importers.davis import FRAMES, MASKS, palette_video
from savflow.importers.source import SourceError, SourceVideo, group_by_video, stem, stride_of

META = "meta.json"
SOURCE_FPS = 30.0


def naming_step(names: list[str]) -> int:
    """The step between the source indices in the frame names (5 in the usual release), 1 when the names are
    not all numbers."""
    stems = [stem(n) for n in names]
    if not stems or not all(s.isdigit() for s in stems):
        return 1
    first = int(stems[0])
    return stride_of(int(s) - first for s in stems) or 1


def read_meta(root: str) -> dict[str, dict]:
    """``meta.json``'s videos: ``{video: {"objects": {"1": {"category": ..., "frames": [...]}}}}``."""
    uri = storage.join(root, META)
    try:
        doc = json.loads(storage.read_bytes(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"{uri}: malformed JSON: {exc}") from exc
    videos = doc.get("videos") if isinstance(doc, dict) else None
    if not isinstance(videos, dict):
        raise SourceError(f"{uri}: field videos: want an object of videos")
    return videos


def categories(video: str, entry: object, file: str) -> dict[int, str]:
    """Object id (0-based) -> category from one ``meta.json`` video entry."""
    objects = entry.get("objects", {}) if isinstance(entry, dict) else None
    if not isinstance(objects, dict):
        raise savformat.SavFormatError("want an object of objects", file=file, video=video, field="objects")
    out = {}
    for key, obj in objects.items():
        if not str(key).isdigit() or not 1 <= int(key) <= 255:
            raise savformat.SavFormatError(f"object id {key!r} is not a palette value 1..255", file=file,
                                           video=video, field="objects")
        out[int(key) - 1] = str(obj.get("category", "")) if isinstance(obj, dict) else ""
    return out


class YtvosReader:
    """The videos of a YouTube-VOS split root (``train/``, ``valid/``)."""

    def __init__(self, root: str, *, fps: float | None = None, resolution: str | None = None) -> None:
        files, folders = storage.list_children(root)
        if META not in files or FRAMES not in folders or MASKS not in folders:
            raise SourceError(f"{root}: not a YouTube-VOS split (want {META}, {FRAMES}/ and {MASKS}/)")
        self.root = root
        self.meta = read_meta(root)
        self.source_fps = fps or SOURCE_FPS
        self.frames_root, self.masks_root = storage.join(root, FRAMES), storage.join(root, MASKS)
        self.frames = group_by_video(storage.list_prefix(self.frames_root))
        self.masks = group_by_video(storage.list_prefix(self.masks_root))

    def videos(self) -> list[str]:
        return sorted(set(self.meta) | set(self.frames))

    def video(self, name: str) -> SourceVideo:
        names = self.frames.get(name, [])
        found = palette_video(name, self.frames_root, names, self.masks_root, self.masks.get(name, []),
                              self.source_fps)
        listed = categories(name, self.meta[name], storage.join(self.root, META)) if name in self.meta else {}
        return dataclasses.replace(found, fps=self.source_fps / naming_step(found.names), categories=listed)
