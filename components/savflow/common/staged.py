"""Where staged files live and how a staged video is indexed; read by stage, train, infer and evaluate.

A staged split root looks like this (``dir`` layout)::

    JPEGImages_24fps/{video}/{frame:05d}.jpg
    annotations/{video}_manual.json                 train
    Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png  val/test; train staged with masks
    file_list.txt                                   the complete videos, one per line
    _done/{video}.json                              completion marker, written last
    _reports/stage-shard-{K}-of-{N}.json            failures of each shard's last run

or, with the ``tar`` layout, the same relative paths as members of ``videos/{video}.tar`` (one object per video,
so a video costs a handful of object-store requests instead of one per frame), indexed by the marker.

The completion marker doubles as the index: it lists every file of the video with its size and CRC-32, and for
a tar its byte offset in the archive plus the archive's size and SHA-256. Readers trust only marked videos and
check what they read against the marker. ``file_list.txt`` is rewritten from the markers by every shard as it
ends, so it is complete once the last shard has finished; the markers are the authority, and
:func:`savflow.common.materialize.materialize` writes its local list from them.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from savflow.common import savformat, storage

ARCHIVE_DIR = "videos"
REPORTS_DIR = "_reports"
FILE_LIST = "file_list.txt"
LAYOUTS = ("dir", "tar")


def archive_name(video: str) -> str:
    return f"{ARCHIVE_DIR}/{savformat.check_name(video)}.tar"


def report_name(shard: int, num_shards: int) -> str:
    return f"{REPORTS_DIR}/stage-shard-{shard}-of-{num_shards}.json"


def video_prefixes(video: str) -> list[str]:
    """The folders that hold a video's files in the ``dir`` layout (and after materializing)."""
    savformat.check_name(video)
    return [f"{savformat.FRAMES_DIR}/{video}", f"{savformat.MASKS_DIR}/{video}"]


def check_member(name: str, video: str) -> str:
    """Return ``name`` if it is one of the paths a staged video may have, else raise.

    Names come from markers and archives in object storage; only these shapes may reach a local disk, so a
    tampered index cannot write outside the video's own folders.
    """
    v = re.escape(savformat.check_name(video))
    patterns = (rf"{savformat.FRAMES_DIR}/{v}/\d{{5,}}\.jpg", rf"{savformat.MASKS_DIR}/{v}/\d{{3}}/\d{{5,}}\.png",
                rf"{savformat.ANNOTATIONS_DIR}/{v}_manual\.json")
    if not any(re.fullmatch(p, name) for p in patterns):
        raise savformat.SavFormatError(f"unexpected file name {name!r}", file=name, video=video, field="files")
    return name


def file_entry(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "size": len(data), "crc32": zlib.crc32(data)}


def check_data(entry: dict[str, Any], data: bytes, *, where: str) -> None:
    """Raise if ``data`` is not what the marker entry says."""
    if len(data) != entry["size"] or zlib.crc32(data) != entry["crc32"]:
        raise storage.StorageError(f"{where}: {entry['name']}: size or CRC-32 differs from the marker "
                                   f"(got {len(data)} bytes)")
