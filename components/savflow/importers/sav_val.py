"""SA-V val/test (and anything in its layout): ``JPEGImages_24fps/{video}/{frame:05d}.jpg`` +
``Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png`` (or DAVIS-style palette PNGs ``{video}/{frame:05d}.png``).

``savflow stage`` copies this layout as it is for evaluation; importing it adds the train format (a
``*_manual.json`` per video), so that held-out videos in the val layout can be trained on too.
"""

from __future__ import annotations

from savflow.common import savformat, storage
from savflow.importers.source import (MaskFile, SourceError, SourceVideo, frame_files, frame_of_mask,
                                      group_by_video, index_by_stem, suffix)

DEFAULT_FPS = 24.0


class SavValReader:
    """The videos of a split root in the SA-V val layout."""

    def __init__(self, root: str, *, fps: float | None = None, resolution: str | None = None) -> None:
        _, folders = storage.list_children(root)
        if savformat.FRAMES_DIR not in folders or savformat.MASKS_DIR not in folders:
            raise SourceError(f"{root}: not an SA-V val layout (want {savformat.FRAMES_DIR}/ and "
                              f"{savformat.MASKS_DIR}/)")
        self.fps = fps or DEFAULT_FPS
        self.frames_root = storage.join(root, savformat.FRAMES_DIR)
        self.masks_root = storage.join(root, savformat.MASKS_DIR)
        self.frames = group_by_video(storage.list_prefix(self.frames_root))
        self.masks = group_by_video(storage.list_prefix(self.masks_root))

    def videos(self) -> list[str]:
        return sorted(set(self.frames) | set(self.masks))

    def video(self, name: str) -> SourceVideo:
        savformat.check_name(name, file=self.frames_root, video=name)
        folder = storage.join(self.frames_root, name)
        uris, names = frame_files(name, folder, self.frames.get(name, []))
        by_stem = index_by_stem(name, names, folder)
        masks: dict[int, list[MaskFile]] = {}
        for rel in self.masks.get(name, []):
            if suffix(rel) != ".png":
                continue
            uri = storage.join(self.masks_root, name, rel)
            parts = rel.split("/")
            if len(parts) == 2 and parts[0].isdigit():
                mask = MaskFile(uri, int(parts[0]))
            elif len(parts) == 1:
                mask = MaskFile(uri)
            else:
                raise savformat.SavFormatError("unexpected file (want OOO/NNNNN.png or NNNNN.png)", file=uri,
                                               video=name, field="masks")
            masks.setdefault(frame_of_mask(name, uri, by_stem), []).append(mask)
        if not masks:
            raise savformat.SavFormatError("no mask PNGs", file=storage.join(self.masks_root, name), video=name,
                                           field="masks")
        return SourceVideo(name, uris, names, masks, self.fps)
