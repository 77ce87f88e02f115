"""A plain folder of frames and per-object binary masks, the shape annotation tools export::

    {source}/{video}/frames/{name}.jpg            (or .jpeg, .png: PNG frames are encoded as JPEG)
    {source}/{video}/masks/{object}/{name}.png    one binary mask per object and annotated frame
    {source}/{video}/masks/{name}.png             or one palette / grey label map per annotated frame

A mask belongs to the frame with the same name (``{name}``, any numbering: frames are ordered naturally, so
``frame_2`` comes before ``frame_10``). Object folders named by numbers keep them as ids; other names
(``person``, ``dog_1``) get ids 0, 1, ... in name order, the names being kept as the objects' categories.
"""

from __future__ import annotations

from savflow.common import savformat, storage
from savflow.importers.source import (MaskFile, SourceError, SourceVideo, frame_files, frame_of_mask,
                                      group_by_video, index_by_stem, natural_key, suffix)

FRAMES = "frames"
MASKS = "masks"
DEFAULT_FPS = 24.0


def object_ids(video: str, folders: list[str], where: str) -> dict[str, int]:
    """Object folder name -> id: the number when every name is one, else the position in name order."""
    if all(f.isdigit() for f in folders):
        ids = {f: int(f) for f in folders}
        if len(set(ids.values())) != len(ids):
            raise savformat.SavFormatError(f"object folders {sorted(folders)} name one id twice", file=where,
                                           video=video, field="masks")
        if any(i > 999 for i in ids.values()):
            raise savformat.SavFormatError("object ids must be 0..999", file=where, video=video, field="masks")
        return ids
    return {f: i for i, f in enumerate(sorted(folders, key=natural_key))}


class FramesMasksReader:
    """The videos under a folder of ``{video}/frames/`` + ``{video}/masks/`` (one listing)."""

    def __init__(self, root: str, *, fps: float | None = None, resolution: str | None = None) -> None:
        self.root = root
        self.fps = fps or DEFAULT_FPS
        self.files = group_by_video(storage.list_prefix(root))
        if not any(any(n.startswith(f"{FRAMES}/") for n in names) for names in self.files.values()):
            raise SourceError(f"{root}: no {{video}}/{FRAMES}/ folders")

    def videos(self) -> list[str]:
        return sorted(self.files)

    def video(self, name: str) -> SourceVideo:
        savformat.check_name(name, file=self.root, video=name)
        names = self.files.get(name, [])
        folder = storage.join(self.root, name, FRAMES)
        uris, frames = frame_files(name, folder, [n[len(FRAMES) + 1:] for n in names if n.startswith(f"{FRAMES}/")])
        by_stem = index_by_stem(name, frames, folder)
        mask_names = [n[len(MASKS) + 1:] for n in names if n.startswith(f"{MASKS}/") and suffix(n) == ".png"]
        where = storage.join(self.root, name, MASKS)
        folders = sorted({n.split("/")[0] for n in mask_names if n.count("/") == 1})
        ids = object_ids(name, folders, where)
        masks: dict[int, list[MaskFile]] = {}
        for rel in mask_names:
            parts, uri = rel.split("/"), storage.join(where, rel)
            if len(parts) > 2:
                raise savformat.SavFormatError("unexpected file (want {object}/{frame}.png or {frame}.png)",
                                               file=uri, video=name, field="masks")
            mask = MaskFile(uri, ids[parts[0]]) if len(parts) == 2 else MaskFile(uri)
            masks.setdefault(frame_of_mask(name, uri, by_stem), []).append(mask)
        if not masks:
            raise savformat.SavFormatError("no mask PNGs", file=where, video=name, field="masks")
        named = {} if all(f.isdigit() for f in folders) else {i: f for f, i in ids.items()}
        return SourceVideo(name, uris, frames, masks, self.fps, named)
