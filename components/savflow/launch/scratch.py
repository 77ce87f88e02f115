"""How much local disk a training pod needs for its copy of the staged data, from the staged data itself.

Every training node copies the whole training set to its ``/scratch`` volume (sam2's dataset reads local files),
so that volume must hold all of it. A full SA-V train copy at the default sample rate is on the order of a
terabyte, so a fixed default would either waste disk on small runs or fail a week-long job on the first big one.
The train step therefore sizes the volume from one listing of the staged split (archive and frame sizes come
with the names), or refuses an explicit size that is too small before any GPU is requested.
"""

from __future__ import annotations

import math

from savflow.common import savformat, staged as layout, storage

# File-system overhead (inodes, block rounding of ~100k small files per 100 GB) and the local file list.
MARGIN = 1.10
FLOOR_BYTES = 10 * 2**30


class ScratchTooSmall(ValueError):
    """An explicit scratch size that cannot hold the training data."""


def staged_bytes(frames_uri: str, videos: list[str]) -> int:
    """Bytes the frames and annotations of ``videos`` take once copied: the archive sizes of a ``tar`` staged
    split, or the sizes of the per-file objects of a ``dir`` one (``frames_uri`` is the split's
    ``JPEGImages_24fps``; annotations of a ``dir`` split sit beside it)."""
    split = frames_uri.rstrip("/")
    if split.endswith("/" + savformat.FRAMES_DIR):
        split = split[: -len(savformat.FRAMES_DIR) - 1]
    wanted = set(videos)
    archives = storage.list_stats(storage.join(split, layout.ARCHIVE_DIR))
    total = sum(st.size for name, st in archives.items() if name.removesuffix(".tar") in wanted)
    frames = storage.list_stats(storage.join(split, savformat.FRAMES_DIR))
    total += sum(st.size for name, st in frames.items() if name.split("/", 1)[0] in wanted)
    annotations = storage.list_stats(storage.join(split, savformat.ANNOTATIONS_DIR))
    total += sum(st.size for name, st in annotations.items() if name.removesuffix("_manual.json") in wanted)
    return total


def required_bytes(data_bytes: int) -> int:
    return max(FLOOR_BYTES, math.ceil(data_bytes * MARGIN))


def to_quantity(nbytes: int) -> str:
    """Whole GiB, rounded up, as a Kubernetes quantity."""
    return f"{math.ceil(nbytes / 2**30)}Gi"


def scratch_size(requested: str, data_bytes: int) -> str:
    """The scratch quantity to request: ``requested`` when it holds the data (with :data:`MARGIN`), the size
    derived from the data when ``requested`` is empty, else :class:`ScratchTooSmall` naming both sizes."""
    from kubernetes.utils.quantity import parse_quantity

    need = required_bytes(data_bytes)
    if not requested:
        return to_quantity(need)
    have = int(parse_quantity(requested))
    if have < need:
        raise ScratchTooSmall(
            f"train_scratch {requested} ({have / 2**30:.0f} GiB) cannot hold the training data: "
            f"{data_bytes / 2**30:.1f} GiB staged, {to_quantity(need)} with file-system margin; raise it, or "
            f"leave it empty to size it from the data")
    return requested
