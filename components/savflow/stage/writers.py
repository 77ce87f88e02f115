"""The two ways ``savflow stage`` writes a staged video: one object per file, or one tar per video.

The layout both produce, and the marker that indexes it, are :mod:`savflow.common.staged`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Callable

from savflow.common import storage
from savflow.common.staged import archive_name, file_entry, video_prefixes

_BLOCK = tarfile.BLOCKSIZE


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
