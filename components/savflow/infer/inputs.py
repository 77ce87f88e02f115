"""Where the inference inputs are, what they hold, and how one video gets onto local disk.

Inputs are two roots (storage URIs)::

    {frames}/{video}/{frame:05d}.jpg                 JPEGImages_24fps-style
    {masks}/{video}/{obj:03d}/{frame:05d}.png        Annotations_6fps-style

When ``frames`` is ``{split}/JPEGImages_24fps`` of a split written by ``savflow stage`` (it holds completion
markers ``{split}/_done/{video}.json``), the split is *staged*: its videos are listed and counted from their
markers (which index every file, in either staging layout, ``dir`` or ``tar``) and materialized with the staging
step's ``materialize``, which checks each file against the marker; a video without a marker fails rather than
being read half-written. Any other roots (a raw SA-V download, say) are listed and copied as they are.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from savflow.common import markers, provenance, storage
from savflow.common.storage_stat import ObjectStat
from savflow.common.failures import FailureReport
from savflow.common.savformat import FRAMES_DIR, MASKS_DIR, check_name
from savflow.common.materialize import staged_split_of

_JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass(frozen=True)
class VideoCounts:
    frames: int
    objects: int

    @property
    def weight(self) -> float:
        """Frames x objects; at least 1, so a video with nothing listed (it will fail) still costs a slot."""
        return float(max(self.frames * self.objects, 1))


@dataclass(frozen=True)
class Sources:
    frames: str
    masks: str
    split: str | None  # the staged split root, when there is one
    staged: Mapping[str, ObjectStat] = field(default_factory=dict)  # staged video -> its marker's identity

    @classmethod
    def resolve(cls, frames: str, masks: str) -> "Sources":
        """Find out whether ``frames`` belongs to a staged split (one listing of its markers)."""
        frames, masks = frames.rstrip("/"), masks.rstrip("/")
        staged = staged_split_of(frames)
        if staged is not None:
            return cls(frames, masks, staged[0], staged[1])
        return cls(frames, masks, None)

    def identity(self, video: str) -> dict[str, Any]:
        """What identifies a video's inputs now: its staged marker's size and version (staging it again
        rewrites it), plus, for masks from another root or inputs that are not staged, a digest of every input
        object's name, size and version (one listing per root)."""
        out: dict[str, Any] = {}
        roots = [self.masks] if self.split is not None else [self.frames, self.masks]
        if self.split is not None:
            stat = self.staged.get(video)
            out["staged"] = None if stat is None else {"size": stat.size, "version": stat.version}
            if self.masks_from_split:
                roots = []
        for root in roots:
            rows = sorted((n, st.size, st.version) for n, st in storage.list_stats(storage.join(root, video)).items())
            out[root] = provenance.digest(rows)
        return out

    @property
    def masks_from_split(self) -> bool:
        """Whether the masks are the staged split's own (then they arrive with the frames)."""
        return self.split is not None and storage.join(self.split, MASKS_DIR) == self.masks

    def videos(self) -> list[str]:
        """Every video folder under either root, and every staged video, sorted; one missing its frames or
        masks is listed so that it fails visibly instead of vanishing. Folders starting with ``_`` (markers,
        reports) are bookkeeping, not videos."""
        names = set(self.staged)
        for root in (self.frames, self.masks):
            names |= {n.rstrip("/") for n in storage.list_prefix(root, recursive=False) if n.endswith("/")}
        found = sorted(check_name(n, file=self.frames) for n in names if not n.startswith("_"))
        if not found:
            raise ValueError(f"{self.frames}, {self.masks}: no videos (no video folders and no staged split); "
                             "point --frames and --masks at the folders that hold the video folders "
                             "(.../JPEGImages_24fps, .../Annotations_6fps)")
        return found

    def count(self, video: str) -> VideoCounts:
        """Frames and objects of a video, from its staged marker or from one listing per root."""
        if self.split is not None:
            marker = markers.read_marker(self.split, video) if video in self.staged else None
            names = [entry["name"] for entry in marker["files"]] if marker else []
            frame_names = [n for n in names if n.startswith(f"{FRAMES_DIR}/{video}/")]
            objects = ({n.split("/")[2] for n in names if n.startswith(f"{MASKS_DIR}/{video}/")}
                       if self.masks_from_split else _object_folders(self.masks, video))
        else:
            frame_names = storage.list_prefix(storage.join(self.frames, video), recursive=False)
            objects = _object_folders(self.masks, video)
        return VideoCounts(frames=sum(1 for n in frame_names if n.lower().endswith(_JPEG_SUFFIXES)),
                           objects=len(objects))

    def counts(self, videos: list[str], *, workers: int = 16) -> dict[str, VideoCounts]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(videos, pool.map(self.count, videos)))

    def fetch(self, local_root: Path, video: str, *, workers: int) -> tuple[Path, Path]:
        """Put one video's frames and masks under ``local_root``; returns (frames folder, masks folder).

        The one place that materializes inputs (sam2's frame loader reads a local folder of JPEGs).
        """
        frames_dir = local_root / FRAMES_DIR / video
        masks_dir = local_root / MASKS_DIR / video
        if self.split is not None:
            from savflow.common.materialize import materialize

            problems = FailureReport(step="materialize")
            if materialize(self.split, local_root, [video], workers=workers, report=problems) != [video]:
                raise storage.StorageError("; ".join(f.reason for f in problems.failures))
        else:
            storage.download_tree(storage.join(self.frames, video), frames_dir, workers=workers)
        if not self.masks_from_split:
            shutil.rmtree(masks_dir, ignore_errors=True)
            storage.download_tree(storage.join(self.masks, video), masks_dir, workers=workers)
        return frames_dir, masks_dir


def _object_folders(masks: str, video: str) -> set[str]:
    return {n.rstrip("/") for n in storage.list_prefix(storage.join(masks, video), recursive=False)
            if n.endswith("/") and n.rstrip("/").isdigit()}

