"""Staged training data onto a node's local disk, once per node, for sam2's ``JSONRawDataset``.

The dataset reads frames and annotation JSONs with plain ``open``/``os.listdir``, so every node needs a local
copy. Local rank 0 fetches it; the node's other processes wait for its ready file. Copies are keyed by what
they hold (source URIs and video list), so a restarted job on the same node, or another job over the same data,
reuses a finished copy instead of fetching it again. Local layout::

    {scratch}/data/{key}/JPEGImages_24fps/{video}/{frame:05d}.jpg
    {scratch}/data/{key}/annotations/{video}_manual.json
    {scratch}/data/{key}/file_list.txt
    {scratch}/data/{key}/_ready.json          written last by local rank 0
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from savflow.common import savformat, storage
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


def list_training_videos(frames_uri: str, annotations_uri: str, file_list_uri: str | None) -> list[str]:
    """The videos to train on: those in the file list if one is given, else every complete video of a staged
    split, else every ``{video}_manual.json`` under ``annotations_uri``."""
    if file_list_uri:
        return read_video_list(file_list_uri)
    staged = staged_split_of(frames_uri)
    if staged is not None:
        return sorted(staged[1])
    names = storage.list_prefix(annotations_uri, recursive=False)
    videos = [n[: -len(MANUAL_SUFFIX)] for n in names if n.endswith(MANUAL_SUFFIX)]
    return [savformat.check_name(v, file=annotations_uri) for v in videos]


def data_key(frames_uri: str, annotations_uri: str, videos: list[str]) -> str:
    blob = json.dumps([frames_uri.rstrip("/"), annotations_uri.rstrip("/"), sorted(videos)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def materialize_train_data(frames_uri: str, annotations_uri: str, videos: list[str], dest: Path,
                           workers: int = 16) -> None:
    """Copy the frames and annotations of ``videos`` under ``dest``.

    A split written by ``savflow stage`` (either layout; the annotations travel inside it) goes through the
    staging step's ``materialize``, which checks every file against the video's completion marker; other roots
    (plain ``JPEGImages_24fps`` + ``annotations`` folders) are copied as they are."""
    staged = staged_split_of(frames_uri)
    if staged is not None:
        got = materialize(staged[0], dest, videos, workers=workers)
        missing = sorted(set(videos) - set(got))
        if missing:
            raise FileNotFoundError(f"{staged[0]}: {len(missing)} training videos are not staged completely: "
                                    f"{', '.join(missing[:10])}")
        return

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


def prepare_node_data(*, frames_uri: str, annotations_uri: str, file_list_uri: str | None, scratch: Path,
                      node_leader: bool, timeout_s: float, poll_s: float = 0.5) -> LocalTrainData:
    """This node's local copy of the training data: fetched by the node leader, awaited by the others."""
    videos = list_training_videos(frames_uri, annotations_uri, file_list_uri)
    if not videos:
        raise ValueError(f"no training videos: {file_list_uri or annotations_uri} lists none")
    data = LocalTrainData(scratch / "data" / data_key(frames_uri, annotations_uri, videos), tuple(videos))
    ready = data.root / READY
    if node_leader:
        if ready.exists():
            log.info("training data: reusing the local copy of %d videos in %s", len(videos), data.root)
        else:
            start = time.monotonic()
            materialize_train_data(frames_uri, annotations_uri, videos, data.root)
            storage.write_text(str(data.file_list), savformat.format_video_list(videos))
            storage.write_text(str(ready), json.dumps({"frames": frames_uri, "annotations": annotations_uri,
                                                       "videos": len(videos)}))
            log.info("training data: copied %d videos to %s in %.1fs", len(videos), data.root,
                     time.monotonic() - start)
        return data
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"training data: {ready} did not appear within {timeout_s:.0f}s "
                               "(the node's local rank 0 fetches it)")
        time.sleep(poll_s)
    return data
