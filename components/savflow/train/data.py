"""Staged training data onto a node's local disk, once per node, for sam2's ``JSONRawDataset``.

The dataset reads frames and annotation JSONs with plain ``open``/``os.listdir``, so every node needs a local
copy. Local rank 0 fetches it; the node's other processes wait for its ready file. A copy's folder is named
after the source URIs and video list, and its ready file records what the data at those URIs was when it was
copied (:meth:`TrainDataSource.identity`: the staged markers' sizes and versions, or every source object's), so
a restarted job on the same node, or another job over the same data, reuses a finished copy only while the data
is unchanged; data replaced since is copied again (for a staged split, just the videos staged again). Local
layout::

    {scratch}/data/{key}/JPEGImages_24fps/{video}/{frame:05d}.jpg
    {scratch}/data/{key}/annotations/{video}_manual.json
    {scratch}/data/{key}/file_list.txt
    {scratch}/data/{key}/_ready.json          written last by local rank 0
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from savflow.common import provenance, savformat, storage
from savflow.common.videolists import read_video_list
from savflow.common.materialize import materialize, staged_split_of

log = logging.getLogger(__name__)

READY = "_ready.json"
MANUAL_SUFFIX = "_manual.json"


@dataclass(frozen=True)
class LocalTrainData:
    """Paths the training config's ``dataset.*`` keys take."""

    root: Path
    videos: tuple[str, ...]

    @property
    def img_folder(self) -> Path:
        return self.root / savformat.FRAMES_DIR

    @property
    def gt_folder(self) -> Path:
        return self.root / savformat.ANNOTATIONS_DIR

    @property
    def file_list(self) -> Path:
        return self.root / "file_list.txt"


@dataclass(frozen=True)
class TrainDataSource:
    """The training data as it is in object storage now: where, which videos, and a digest of its content's
    identity (sizes and versions), so that a copy or a checkpoint can tell whether it was made from it."""

    frames: str
    annotations: str
    videos: tuple[str, ...]
    staged_split: str | None
    content: str

    def identity(self) -> dict[str, Any]:
        return {"frames": self.frames.rstrip("/"), "annotations": self.annotations.rstrip("/"),
                "videos": len(self.videos), "video_list": provenance.digest(list(self.videos)),
                "content": self.content}


def describe_source(frames_uri: str, annotations_uri: str, file_list_uri: str | None) -> TrainDataSource:
    """The videos to train on (those in the file list if one is given, else every complete video of a staged
    split, else every ``{video}_manual.json`` under ``annotations_uri``) and their content's identity: one
    listing of a staged split's markers, or of the frame and annotation roots."""
    staged = staged_split_of(frames_uri)
    if file_list_uri:
        videos = read_video_list(file_list_uri)
    elif staged is not None:
        videos = sorted(staged[1])
    else:
        names = storage.list_prefix(annotations_uri, recursive=False)
        videos = [savformat.check_name(n[: -len(MANUAL_SUFFIX)], file=annotations_uri) for n in names
                  if n.endswith(MANUAL_SUFFIX)]
    if staged is not None:
        content = {v: _stat_row(staged[1].get(v)) for v in videos}
    else:
        wanted = set(videos)
        frames = storage.list_stats(frames_uri)
        content = {"frames": {n: _stat_row(st) for n, st in frames.items() if n.split("/", 1)[0] in wanted},
                   "annotations": {n: _stat_row(st) for n, st in storage.list_stats(annotations_uri).items()
                                   if n.removesuffix(MANUAL_SUFFIX) in wanted}}
    return TrainDataSource(frames_uri, annotations_uri, tuple(videos), staged[0] if staged else None,
                           provenance.digest(content))


def _stat_row(st: storage.ObjectStat | None) -> list[Any] | None:
    return None if st is None else [st.size, st.version]


def data_key(frames_uri: str, annotations_uri: str, videos: list[str]) -> str:
    blob = json.dumps([frames_uri.rstrip("/"), annotations_uri.rstrip("/"), sorted(videos)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def materialize_train_data(source: TrainDataSource, dest: Path, workers: int = 16) -> None:
    """Copy the frames and annotations of the source's videos under ``dest``.

    A split written by ``savflow stage`` (either layout; the annotations travel inside it) goes through the
    staging step's ``materialize``, which checks every file against the video's completion marker and copies
    again only the videos staged again since; other roots (plain ``JPEGImages_24fps`` + ``annotations``
    folders) are copied as they are, into a cleared folder."""
    frames_uri, annotations_uri, videos = source.frames, source.annotations, list(source.videos)
    if source.staged_split is not None:
        got = materialize(source.staged_split, dest, videos, workers=workers)
        missing = sorted(set(videos) - set(got))
        if missing:
            raise FileNotFoundError(f"{source.staged_split}: {len(missing)} training videos are not staged "
                                    f"completely: {', '.join(missing[:10])}")
        return
    for folder in (savformat.FRAMES_DIR, savformat.ANNOTATIONS_DIR):
        shutil.rmtree(dest / folder, ignore_errors=True)

    def _frame_names(video: str) -> list[str]:
        names = storage.list_prefix(storage.join(frames_uri, video))
        if not names:
            raise FileNotFoundError(f"{storage.join(frames_uri, video)}: video {video} has no staged frames")
        return [f"{video}/{n}" for n in names]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        frame_names = [n for names in pool.map(_frame_names, videos) for n in names]
    storage.download_tree(frames_uri, dest / savformat.FRAMES_DIR, names=frame_names, workers=workers)
    storage.download_tree(annotations_uri, dest / savformat.ANNOTATIONS_DIR,
                          names=[f"{v}{MANUAL_SUFFIX}" for v in videos], workers=workers)


def _ready_key(ready: Path) -> dict[str, Any] | None:
    try:
        return provenance.key_of(json.loads(ready.read_text()))
    except (OSError, ValueError):
        return None


def prepare_node_data(source: TrainDataSource, *, scratch: Path, node_leader: bool, timeout_s: float,
                      poll_s: float = 0.5) -> LocalTrainData:
    """This node's local copy of the training data: fetched by the node leader, awaited by the others (until
    a ready file made from this very ``source`` appears)."""
    videos = list(source.videos)
    if not videos:
        raise ValueError(f"no training videos: {source.annotations} lists none")
    data = LocalTrainData(scratch / "data" / data_key(source.frames, source.annotations, videos), tuple(videos))
    ready = data.root / READY
    key = source.identity()
    if node_leader:
        diffs = provenance.differences(_ready_key(ready), key) if ready.exists() else []
        if ready.exists() and not diffs:
            log.info("training data: reusing the local copy of %d videos in %s", len(videos), data.root)
        else:
            if diffs:
                log.warning("training data: the local copy in %s was made from other data (%s); copying again",
                            data.root, "; ".join(diffs))
            ready.unlink(missing_ok=True)
            start = time.monotonic()
            materialize_train_data(source, data.root)
            storage.write_text(str(data.file_list), savformat.format_video_list(videos))
            storage.write_text(str(ready), json.dumps({provenance.KEY_FIELD: key}))
            log.info("training data: copied %d videos to %s in %.1fs", len(videos), data.root,
                     time.monotonic() - start)
        return data
    deadline = time.monotonic() + timeout_s
    while not (ready.exists() and _ready_key(ready) == key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"training data: {ready} for the current data did not appear within "
                               f"{timeout_s:.0f}s (the node's local rank 0 fetches it)")
        time.sleep(poll_s)
    return data
