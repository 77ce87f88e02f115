"""Where staged files live, and the two ways of writing them: one object per file, or one tar per video.

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
:func:`savflow.stage.materialize.materialize` writes its local list from them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zlib
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Callable

from savflow.common import savformat, storage

ARCHIVE_DIR = "videos"
REPORTS_DIR = "_reports"
FILE_LIST = "file_list.txt"
LAYOUTS = ("dir", "tar")
_BLOCK = tarfile.BLOCKSIZE


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


def _padded(size: int) -> int:
    """Bytes a member's data takes in a tar: its size rounded up to whole 512-byte blocks."""
    return (size + _BLOCK - 1) // _BLOCK * _BLOCK


class _HashingFile:
    """A write-only file wrapper that hashes what passes through, so the archive is hashed as it is written."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._fh.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _everything_under(root: str) -> list[str]:
    """Names below ``root``; on local disk including the temp files of writes a killed run left behind, which
    the storage listing hides but ``os.listdir`` in sam2's dataset would trip over."""
    if storage.is_gcs(root):
        return storage.list_prefix(root)
    base = storage.local_path(root)
    return [os.path.relpath(os.path.join(d, n), base).replace(os.sep, "/")
            for d, _dirs, names in os.walk(base) for n in names]


class _QueuedWriter:
    """Runs each write in a pool with at most ``max_in_flight`` pending, so the decoding thread hands a file
    over and goes on instead of waiting for disk or network, yet never runs far ahead."""

    def __init__(self, pool: Executor, max_in_flight: int) -> None:
        self._pool, self._max = pool, max_in_flight
        self._pending: deque[Future] = deque()
        self.files: list[dict[str, Any]] = []

    def _submit(self, fn: Callable[..., object], *args: object) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while self._pending and (len(self._pending) > self._max or self._pending[0].done()):
            self._pending.popleft().result()

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def _cancel(self) -> None:
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                future.exception()
        self._pending.clear()


class TarWriter(_QueuedWriter):
    """Builds one video's archive in a local file (appended by one writer thread), then uploads it as one object.

    Members are appended in the order given; each entry records its data offset so a reader can fetch a single
    frame with a ranged read. Nothing reaches the destination before :meth:`finish`, and the upload itself is
    atomic, so a killed run leaves at worst an unmarked (ignored) archive.
    """

    def __init__(self, dest: str, video: str, scratch: Path, max_in_flight: int = 16) -> None:
        super().__init__(ThreadPoolExecutor(1, thread_name_prefix="stage-tar"), max_in_flight)
        self.dest, self.video = dest, video
        self.path = scratch / f"{video}.tar"
        self._fh = open(self.path, "wb")
        self._out = _HashingFile(self._fh)
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.PAX_FORMAT)

    def add(self, name: str, data: bytes) -> None:
        self._submit(self._append, name, data)

    def _append(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(data))
        entry = file_entry(name, data)
        entry["offset"] = self._tar.offset - _padded(len(data))
        self.files.append(entry)

    def _close(self) -> None:
        self._pool.shutdown()
        self._tar.close()
        self._fh.close()

    def finish(self) -> dict[str, Any]:
        """Close and upload the archive; returns the marker fields that describe it."""
        try:
            self._drain()
        finally:
            self._close()
        name = archive_name(self.video)
        storage.upload_file(self.path, storage.join(self.dest, name))
        self.path.unlink(missing_ok=True)
        return {"archive": {"name": name, "size": self._out.size, "sha256": self._out.sha256.hexdigest()}}

    def abort(self) -> None:
        self._cancel()
        self._close()
        self.path.unlink(missing_ok=True)


class DirWriter(_QueuedWriter):
    """Writes one video's files as separate objects, in parallel, at most ``max_in_flight`` at a time.

    On :meth:`finish` it waits for every write and deletes files a previous, unfinished attempt left under the
    video's folders that this attempt did not write (for example after a change of sample rate).
    """

    def __init__(self, dest: str, video: str, pool: Executor, max_in_flight: int) -> None:
        super().__init__(pool, max_in_flight)
        self.dest, self.video = dest, video

    def add(self, name: str, data: bytes) -> None:
        self.files.append(file_entry(name, data))
        self._submit(storage.write_bytes, storage.join(self.dest, name), data)

    def finish(self) -> dict[str, Any]:
        self._drain()
        written = {f["name"] for f in self.files}
        for prefix in video_prefixes(self.video):
            root = storage.join(self.dest, prefix)
            for rel in _everything_under(root):
                if f"{prefix}/{rel}" not in written:
                    storage.delete(storage.join(root, rel))
        return {}

    def abort(self) -> None:
        self._cancel()
