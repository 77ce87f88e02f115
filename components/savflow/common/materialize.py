"""Materialize staged videos onto local disk for training and inference pods.

Training (sam2's ``JSONRawDataset``) and inference read frames from a local folder; this copies a list of staged
videos there, from either layout, in parallel, into the same relative paths as the staged root::

    {local}/JPEGImages_24fps/{video}/{frame:05d}.jpg
    {local}/annotations/{video}_manual.json        (train)
    {local}/Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png   (val/test; train staged with masks)
    {local}/file_list.txt                           the videos of this call that are complete locally
    {local}/_done/{video}.json                      local completion marker (a copy of the staged one, plus
                                                    the staged marker's size and version as ``copied_from``)

Only videos with a staged completion marker are copied, every file is checked against the marker (archive
SHA-256, per-file size and CRC-32), and the local marker is written last, so a pod killed half-way redoes just
the unfinished videos next time. A local copy counts as complete only while the staged marker it was copied
from is still the one in object storage (same size and version: staging the video again rewrites it), so a
local copy of data that was replaced since is copied again rather than reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from savflow.common import markers, savformat, storage
from savflow.common.failures import FailureReport
from savflow.common import staged as lay
from savflow.common.storage_stat import ObjectStat

log = logging.getLogger(__name__)

COPIED_FROM = "copied_from"
_DOWNLOADS = ".materialize-"

_HASH_CHUNK = 1 << 20


class MaterializeError(RuntimeError):
    """A staged video cannot be copied (no marker, or its data does not match the marker)."""


def _clear_local(local_root: Path, video: str) -> None:
    """Remove what an unfinished earlier attempt left, so no stale frame survives into the new copy."""
    for prefix in lay.video_prefixes(video):
        shutil.rmtree(local_root / prefix, ignore_errors=True)
    (local_root / savformat.annotation_path(video)).unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _from_archive(staged_root: str, local_root: Path, video: str, marker: dict[str, Any], tmp: Path) -> None:
    archive = marker["archive"]
    if archive.get("name") != lay.archive_name(video):
        raise MaterializeError(f"{staged_root}: marker of {video} names archive {archive.get('name')!r}")
    uri = storage.join(staged_root, archive["name"])
    path = storage.download_file(uri, tmp / f"{video}.tar")
    try:
        size = path.stat().st_size
        if size != archive["size"] or _sha256(path) != archive["sha256"]:
            raise MaterializeError(f"{uri}: size or SHA-256 differs from its marker (got {size} bytes)")
        with open(path, "rb") as fh:
            for entry in marker["files"]:
                fh.seek(entry["offset"])
                data = fh.read(entry["size"])
                lay.check_data(entry, data, where=uri)
                out = local_root / entry["name"]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
    finally:
        path.unlink(missing_ok=True)


def _from_dir(staged_root: str, local_root: Path, marker: dict[str, Any], workers: int) -> None:
    names = [entry["name"] for entry in marker["files"]]
    storage.download_tree(staged_root, local_root, names=names, workers=workers)
    for entry in marker["files"]:
        lay.check_data(entry, (local_root / entry["name"]).read_bytes(), where=staged_root)


def _remove_orphaned_downloads(local_root: Path) -> None:
    """Delete the download folders that killed processes left (``.materialize-{pid}-*`` of a pid not alive),
    so that a preempted copy does not keep archives on a sized scratch disk; live ones are left alone."""
    for entry in local_root.glob(f"{_DOWNLOADS}*"):
        pid = entry.name[len(_DOWNLOADS):].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _copied_from(stat: ObjectStat) -> dict[str, Any]:
    return {"size": stat.size, "version": stat.version}


def _materialize_video(staged_root: str, local_root: Path, video: str, stat: ObjectStat, tmp: Path,
                       io_workers: int) -> None:
    marker = markers.read_marker(staged_root, video)
    if marker is None:
        raise MaterializeError(f"{staged_root}: {video} is not staged (no completion marker)")
    for entry in marker.get("files", []):
        lay.check_member(entry["name"], video)
    markers.clear_marker(str(local_root), video)
    _clear_local(local_root, video)
    if "archive" in marker:
        _from_archive(staged_root, local_root, video, marker, tmp)
    else:
        _from_dir(staged_root, local_root, marker, io_workers)
    markers.write_marker(str(local_root), video, {**marker, COPIED_FROM: _copied_from(stat)})


def _current_locally(local_root: Path, videos: list[str], staged: dict[str, ObjectStat]) -> set[str]:
    """The videos whose local copy was made from the staged marker that is there now."""
    local = markers.read_markers(str(local_root), videos)
    return {v for v, payload in local.items()
            if payload is not None and payload.get(COPIED_FROM) == _copied_from(staged[v])}


def staged_split_of(frames_uri: str) -> tuple[str, dict[str, ObjectStat]] | None:
    """The staged split that ``frames_uri`` (``{split}/JPEGImages_24fps``) belongs to, with its complete videos
    and their markers' sizes and versions; None when it is not part of a split written by ``savflow stage`` (no
    completion markers there)."""
    frames_uri = frames_uri.rstrip("/")
    if not frames_uri.endswith("/" + savformat.FRAMES_DIR):
        return None
    split = frames_uri[: -len(savformat.FRAMES_DIR) - 1]
    done = markers.done_stats(split)
    return (split, done) if done else None


def materialize(staged_root: str, local_root: Path | str, videos: list[str] | None = None, workers: int = 8, *,
                report: FailureReport | None = None) -> list[str]:
    """Copy staged videos (default: every complete one) from ``staged_root`` to ``local_root``.

    Returns the requested videos that are complete locally afterwards, in request order, and writes them to
    ``{local_root}/file_list.txt``. A requested video that is not staged, or whose data does not match its
    marker, is left out: recorded in ``report`` when one is given, logged as an error otherwise, so a caller
    compares the result with its request.
    """
    local_root = Path(local_root)
    local_root.mkdir(parents=True, exist_ok=True)
    staged = markers.done_stats(staged_root)
    if videos is None and not staged:
        raise ValueError(f"{staged_root}: no staged videos (no completion markers under {markers.MARKER_DIR}/); "
                         "is it the folder `savflow stage --dest` wrote?")
    wanted = sorted(staged) if videos is None else list(dict.fromkeys(videos))
    present = markers.done_units(str(local_root))
    current = _current_locally(local_root, [v for v in wanted if v in present and v in staged], staged)
    failed: set[str] = set()

    def fail(video: str, reason: str) -> None:
        failed.add(video)
        if report is not None:
            report.fail(video, "materialize", reason)
        else:
            log.error("materialize: %s: %s", video, reason)

    todo = []
    for video in wanted:
        if video in current:
            continue
        if video in staged:
            todo.append(video)
        else:
            fail(video, f"{staged_root}: not staged (no completion marker)")
    changed = sum(1 for v in todo if v in present)
    log.info("materialize %d videos from %s to %s: %d already there, %d to copy (%d staged again since copied)",
             len(wanted), staged_root, local_root, len(current), len(todo), changed)
    _remove_orphaned_downloads(local_root)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_DOWNLOADS}{os.getpid()}-", dir=local_root))
    try:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="materialize") as pool:
            futures = {video: pool.submit(_materialize_video, staged_root, local_root, video, staged[video], tmp,
                                          max(2, workers // 2)) for video in todo}
            for video, future in futures.items():
                try:
                    future.result()
                except (MaterializeError, storage.StorageError, savformat.SavFormatError, OSError, KeyError) as exc:
                    fail(video, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = [v for v in wanted if v not in failed]
    storage.write_text(str(local_root / lay.FILE_LIST), savformat.format_video_list(result))
    return result
