"""What a raw SA-V split holds: found by listing the source once per shard.

Two shapes are recognised:

* train: ``{video}.mp4`` + ``{video}_manual.json`` side by side (other files, such as ``*_auto.json``, are
  ignored). A video's weight for sharding is its mp4's size in bytes, which tracks its frame count (SA-V videos
  share one resolution and codec) and costs no extra request;
* val/test: ``JPEGImages_24fps/{video}/{frame:05d}.jpg`` + ``Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png``.
  The weight is the frame count, read off the listing. With ``annotations/{video}_manual.json`` next to them
  (what ``savflow import`` writes: extracted JPEG frames, and an annotation at the stride the data was
  annotated with, which an mp4 split cannot carry below SA-V's 4), the annotations are staged too, so the same
  root serves as a train split (a video may then have no masks) and as a val split with size buckets.

Anything that does not fit (a stray file in a video's folder, an unsafe name) is kept as a per-video problem, so
that one odd video is reported while the rest are staged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from savflow.common import savformat, storage
from savflow.common.storage_stat import ObjectStat

_FRAME_RE = re.compile(r"(\d{5,})\.jpg")
_MASK_RE = re.compile(r"(\d{3})/(\d{5,})\.png")
_MANUAL = "_manual.json"


class SourceError(RuntimeError):
    """The source URI holds no recognisable SA-V split."""


@dataclass
class TrainSource:
    root: str
    mp4s: dict[str, ObjectStat]
    annotations: dict[str, ObjectStat]

    kind = "train"

    def videos(self) -> list[str]:
        return sorted(set(self.mp4s) | set(self.annotations))

    def weights(self) -> dict[str, float]:
        return {v: float(self.mp4s[v].size if v in self.mp4s else 0) for v in self.videos()}

    def identity(self, video: str) -> dict[str, Any]:
        """What identifies the video's source objects (size and version of the mp4 and the annotation)."""
        return {"mp4": _stat_dict(self.mp4s.get(video)), "annotation": _stat_dict(self.annotations.get(video))}

    def mp4_uri(self, video: str) -> str:
        return storage.join(self.root, f"{video}.mp4")

    def annotation_uri(self, video: str) -> str:
        return storage.join(self.root, f"{video}_manual.json")


@dataclass
class ValSource:
    root: str
    frames: dict[str, list[int]] = field(default_factory=dict)
    masks: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    stats: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)
    annotations: set[str] = field(default_factory=set)

    kind = "val"

    def annotation_uri(self, video: str) -> str:
        return storage.join(self.root, savformat.annotation_path(video))

    def identity(self, video: str) -> dict[str, Any]:
        """What identifies the video's source files: a digest of every name with its size and version."""
        rows = sorted(self.stats.get(video, []))
        return {"files": len(rows), "digest": hashlib.sha256(json.dumps(rows).encode()).hexdigest()}

    def videos(self) -> list[str]:
        return sorted(set(self.frames) | set(self.masks) | set(self.problems) | self.annotations)

    def weights(self) -> dict[str, float]:
        return {v: float(len(self.frames.get(v, ()))) for v in self.videos()}


def _stat_dict(st: ObjectStat | None) -> dict[str, Any] | None:
    return None if st is None else {"size": st.size, "version": st.version}


def _video_of(rel: str, source: ValSource, what: str) -> str | None:
    """The video folder of a listed name, or None (after noting a problem) when the folder name is unsafe."""
    video = rel.split("/", 1)[0]
    try:
        savformat.check_name(video, file=f"{what}/{rel}", video=video)
    except savformat.SavFormatError as exc:
        source.problems.setdefault(video, str(exc))
        return None
    return video


def _listed(source: ValSource, folder: str) -> Iterator[tuple[str, str, str]]:
    """``(video, name below the video folder, name below the split)`` of every file under ``folder`` (one
    listing), each file's size and version kept for the video's identity; unsafe video names become problems."""
    for rel, st in storage.list_stats(storage.join(source.root, folder)).items():
        video = _video_of(rel, source, folder)
        if video is not None:
            source.stats.setdefault(video, []).append((f"{folder}/{rel}", st.size, st.version))
            yield video, rel[len(video) + 1:], f"{folder}/{rel}"


def _scan_annotations(source: ValSource) -> None:
    """The ``{video}_manual.json`` files of ``annotations/`` (one listing, not recursive), into the videos'
    identities; other files there are not SA-V annotations and are left alone."""
    folder = storage.join(source.root, savformat.ANNOTATIONS_DIR)
    for name, st in storage.list_stats(folder).items():
        if "/" in name or not name.endswith(_MANUAL):
            continue
        video = name[: -len(_MANUAL)]
        try:
            savformat.check_name(video, file=storage.join(folder, name), video=video)
        except savformat.SavFormatError as exc:
            source.problems.setdefault(video, str(exc))
            continue
        source.annotations.add(video)
        source.stats.setdefault(video, []).append((f"{savformat.ANNOTATIONS_DIR}/{name}", st.size, st.version))


def _scan_val(root: str, annotations: bool = False) -> ValSource:
    source = ValSource(root)
    for video, name, where in _listed(source, savformat.FRAMES_DIR):
        match = _FRAME_RE.fullmatch(name)
        if match is None:
            source.problems.setdefault(video, f"{where}: unexpected file (want NNNNN.jpg)")
            continue
        source.frames.setdefault(video, []).append(int(match.group(1)))
    for video, name, where in _listed(source, savformat.MASKS_DIR):
        match = _MASK_RE.fullmatch(name)
        if match is None:
            source.problems.setdefault(video, f"{where}: unexpected file (want the per-object layout OOO/NNNNN.png)")
            continue
        source.masks.setdefault(video, {}).setdefault(int(match.group(1)), []).append(int(match.group(2)))
    if annotations:
        _scan_annotations(source)
    for frames in source.frames.values():
        frames.sort()
    for objects in source.masks.values():
        for frames in objects.values():
            frames.sort()
    return source


def scan_source(root: str) -> TrainSource | ValSource:
    """List the split at ``root`` and say what it holds."""
    files, folders = storage.list_children(root)
    if savformat.FRAMES_DIR in folders:
        return _scan_val(root, annotations=savformat.ANNOTATIONS_DIR in folders)
    mp4 = {n[: -len(".mp4")]: st for n, st in files.items() if n.endswith(".mp4")}
    annotations = {n[: -len("_manual.json")]: st for n, st in files.items() if n.endswith("_manual.json")}
    if not mp4 and not annotations:
        raise SourceError(f"{root}: no SA-V split here (neither *.mp4 + *_manual.json nor "
                          f"{savformat.FRAMES_DIR}/)")
    return TrainSource(root, mp4, annotations)
