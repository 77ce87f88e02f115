"""DAVIS, MOSE and LVOS: ``JPEGImages/[480p/]{video}/*.jpg`` + ``Annotations/[480p/]{video}/*.png``.

One palette PNG per annotated frame, pixel value v belonging to object v (written as object v - 1: SA-V's folders
count from 000). DAVIS ships a resolution level (``480p``, ``Full-Resolution``); MOSE and LVOS do not. The
frames are 24 fps for DAVIS; MOSE and LVOS differ, so ``--fps`` says what they are (it is recorded, not used to
resample). Which frames are annotated is read off the PNGs present: every frame (DAVIS, MOSE) or a stride
(LVOS), giving ``ann_every``.
"""

from __future__ import annotations

from savflow.common import savformat, storage
from savflow.importers.source import (MaskFile, SourceError, SourceVideo, frame_files, frame_of_mask,
                                      group_by_video, index_by_stem, suffix)

FRAMES = "JPEGImages"
MASKS = "Annotations"
RESOLUTIONS = ("480p", "1080p", "Full-Resolution")
DEFAULT_FPS = 24.0


def palette_video(video: str, frames_root: str, frame_names: list[str], masks_root: str, mask_names: list[str],
                  fps: float) -> SourceVideo:
    """A video of frames and one palette PNG per annotated frame (named like its frame), as DAVIS and
    YouTube-VOS lay them out."""
    savformat.check_name(video, file=frames_root, video=video)
    folder = storage.join(frames_root, video)
    uris, names = frame_files(video, folder, frame_names)
    by_stem = index_by_stem(video, names, folder)
    masks: dict[int, list[MaskFile]] = {}
    for name in sorted(n for n in mask_names if "/" not in n and suffix(n) == ".png"):
        uri = storage.join(masks_root, video, name)
        masks.setdefault(frame_of_mask(video, uri, by_stem), []).append(MaskFile(uri))
    if not masks:
        raise savformat.SavFormatError("no annotation PNGs", file=storage.join(masks_root, video), video=video,
                                       field="masks")
    return SourceVideo(video, uris, names, masks, fps)


def resolution_folder(root: str, wanted: str | None) -> str:
    """The resolution level under ``root/JPEGImages`` to read: ``wanted``, else ``480p`` where there is one
    (the DAVIS benchmark's), else the only level, else none (MOSE, LVOS)."""
    _, levels = storage.list_children(storage.join(root, FRAMES))
    found = sorted(levels & set(RESOLUTIONS))
    if wanted:
        if wanted not in levels:
            raise SourceError(f"{storage.join(root, FRAMES)}: no resolution folder {wanted!r} "
                              f"(found: {', '.join(sorted(levels)) or 'none'})")
        return wanted
    if "480p" in found:
        return "480p"
    return found[0] if len(found) == 1 else ""


class DavisReader:
    """The videos of a DAVIS-style dataset root (one listing of the frames and one of the annotations)."""

    def __init__(self, root: str, *, fps: float | None = None, resolution: str | None = None) -> None:
        _, folders = storage.list_children(root)
        if FRAMES not in folders or MASKS not in folders:
            raise SourceError(f"{root}: not a DAVIS/MOSE/LVOS root (want {FRAMES}/ and {MASKS}/, found "
                              f"{', '.join(sorted(folders)) or 'no folders'})")
        level = resolution_folder(root, resolution)
        self.fps = fps or DEFAULT_FPS
        self.frames_root = storage.join(root, FRAMES, level)
        self.masks_root = storage.join(root, MASKS, level)
        self.frames = group_by_video(storage.list_prefix(self.frames_root))
        self.masks = group_by_video(storage.list_prefix(self.masks_root))
        if not self.frames:
            raise SourceError(f"{self.frames_root}: no video folders")

    def videos(self) -> list[str]:
        return sorted(set(self.frames) | set(self.masks))

    def video(self, name: str) -> SourceVideo:
        return palette_video(name, self.frames_root, self.frames.get(name, []), self.masks_root,
                             self.masks.get(name, []), self.fps)
