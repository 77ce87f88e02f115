"""One small storage API over URIs: ``gs://bucket/prefix`` (google-cloud-storage) and local paths.

Every pipeline step reads and writes through these functions, so a local run uses a directory where a cluster
run uses a bucket. Each function dispatches by scheme to one backend, :mod:`savflow.common.storage_gcs` or
:mod:`savflow.common.storage_local`. Guarantees both keep:

* a write is never visible half-done under its final name (local: temp file + rename; GCS: uploads are atomic);
* ``create_only=True`` never overwrites (local: hard link, which fails if the name exists; GCS: generation
  precondition ``if_generation_match=0``) and raises :class:`AlreadyExistsError` instead;
* ``list_prefix`` returns names relative to the prefix, with ``/`` separators, sorted;
* every failure is a :class:`StorageError` (or its :class:`NotFoundError` / :class:`AlreadyExistsError`) whose
  message names the URI.

Trees move in parallel: ``google.cloud.storage.transfer_manager`` for GCS, a thread pool for local copies.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from savflow.common import deployment
from savflow.common import storage_gcs as _gcs
from savflow.common import storage_local as _local
from savflow.common.storage_errors import AlreadyExistsError, NotFoundError, StorageError
from savflow.common.storage_stat import ObjectStat
from savflow.common.storage_gcs import CHUNK_SIZE, CHUNKED_UPLOAD_THRESHOLD, GS_SCHEME
from savflow.common.storage_local import FILE_SCHEME, local_path

__all__ = ["AlreadyExistsError", "NotFoundError", "ObjectStat", "StorageError", "CHUNK_SIZE", "CHUNKED_UPLOAD_THRESHOLD",
           "GS_SCHEME", "FILE_SCHEME", "KEY_FILE_ENV", "TreeResult", "delete", "delete_prefix", "download_file",
           "download_tree", "exists", "gcs_client", "is_gcs", "join", "list_children", "list_prefix", "list_stats",
           "local_path", "stat",
           "read_bytes", "read_text", "split_gcs", "upload_file", "upload_tree", "write_bytes", "write_text"]

KEY_FILE_ENV = deployment.KEY_FILE_ENV
gcs_client = _gcs.client
split_gcs = _gcs.split


def is_gcs(uri: str) -> bool:
    return uri.startswith(GS_SCHEME)


def _backend(uri: str):
    return _gcs if is_gcs(uri) else _local


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/`` (local paths too), ignoring empty parts."""
    out = uri.rstrip("/") if uri not in ("/", "") else uri
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}" if out not in ("", "/") else f"{out}{part}"
    return out


def read_bytes(uri: str) -> bytes:
    return _backend(uri).read_bytes(uri)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes, *, create_only: bool = False, content_type: str | None = None) -> None:
    """Write ``data`` atomically; with ``create_only`` fail rather than replace an existing object."""
    if is_gcs(uri):
        _gcs.write_bytes(uri, data, create_only=create_only, content_type=content_type)
    else:
        _local.write_bytes(uri, data, create_only=create_only)


def write_text(uri: str, text: str, *, create_only: bool = False) -> None:
    write_bytes(uri, text.encode("utf-8"), create_only=create_only, content_type="text/plain; charset=utf-8")


def exists(uri: str) -> bool:
    return _backend(uri).exists(uri)


def delete(uri: str, *, missing_ok: bool = True) -> None:
    _backend(uri).delete(uri, missing_ok=missing_ok)


def delete_prefix(uri: str) -> int:
    """Delete every object below ``uri``; returns how many were deleted."""
    names = list_prefix(uri)
    if is_gcs(uri):
        for name in names:
            delete(join(uri, name))
    else:
        _local.delete_prefix(uri)
    return len(names)


def list_prefix(uri: str, *, recursive: bool = True) -> list[str]:
    """Names below ``uri`` relative to it, sorted; ``recursive=False`` gives the direct children only
    (sub-folders end with ``/``). Local temp files of in-flight writes are never listed."""
    return _backend(uri).list_prefix(uri, recursive=recursive)


def list_stats(uri: str) -> dict[str, ObjectStat]:
    """Every object below ``uri`` with its size and version, names relative to it (one listing; both come in
    the same responses as the names)."""
    return _backend(uri).list_stats(uri)


def stat(uri: str) -> ObjectStat:
    """Size and version of one object (:class:`NotFoundError` when there is none)."""
    return _backend(uri).stat(uri)


def list_children(uri: str) -> tuple[dict[str, ObjectStat], set[str]]:
    """The direct children of ``uri``: files with their size and version, and sub-folder names (one request on GCS).
    Hidden local entries (temp files of in-flight writes) are left out."""
    return _backend(uri).list_children(uri)


def upload_file(local: str | Path, uri: str, *, create_only: bool = False) -> None:
    """Copy one local file to ``uri`` (large files to GCS in parallel chunks)."""
    _backend(uri).upload_file(Path(local), uri, create_only=create_only)


def download_file(uri: str, local: str | Path) -> Path:
    """Copy ``uri`` to a local file, atomically (temp name, then rename)."""
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = _local.tmp_sibling(local)
    try:
        _backend(uri).download_file(uri, tmp)
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)
    return local


@dataclass(frozen=True)
class TreeResult:
    """What a tree transfer moved."""

    files: int
    bytes: int


def upload_tree(local_dir: str | Path, uri: str, *, names: Iterable[str] | None = None,
                workers: int = 8) -> TreeResult:
    """Upload every file below ``local_dir`` (or just ``names``, relative to it) under ``uri``, in parallel."""
    local_dir = Path(local_dir)
    rel = sorted(names) if names is not None else list_prefix(str(local_dir))
    if not rel:
        return TreeResult(0, 0)
    total = sum((local_dir / n).stat().st_size for n in rel)
    if is_gcs(uri):
        _gcs.upload_tree(local_dir, uri, rel, workers)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda n: upload_file(local_dir / n, join(uri, n)), rel))
    return TreeResult(len(rel), total)


def download_tree(uri: str, local_dir: str | Path, *, names: Iterable[str] | None = None,
                  workers: int = 8) -> TreeResult:
    """Download every object below ``uri`` (or just ``names``, relative to it) into ``local_dir``."""
    local_dir = Path(local_dir)
    rel = sorted(names) if names is not None else list_prefix(uri)
    if not rel:
        return TreeResult(0, 0)
    if is_gcs(uri):
        _gcs.download_tree(uri, local_dir, rel, workers)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda n: download_file(join(uri, n), local_dir / n), rel))
    total = sum((local_dir / n).stat().st_size for n in rel)
    return TreeResult(len(rel), total)
