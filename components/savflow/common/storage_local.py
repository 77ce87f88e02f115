"""The local-disk backend of :mod:`savflow.common.storage` (plain paths and ``file://``).

Writes go to a temporary sibling and are renamed into place, so a reader never sees half a file; a create-only
write links the temporary file to its final name, which fails when the name is taken.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from savflow.common.storage_errors import AlreadyExistsError, NotFoundError, StorageError
from savflow.common.storage_stat import ObjectStat

FILE_SCHEME = "file://"


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (plain path or ``file://``)."""
    if uri.startswith("gs://"):
        raise StorageError(f"{uri}: not a local path")
    return Path(uri[len(FILE_SCHEME):] if uri.startswith(FILE_SCHEME) else uri)


def tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


def is_tmp(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def _commit(tmp: Path, final: Path, create_only: bool, uri: str) -> None:
    try:
        if create_only:
            try:
                os.link(tmp, final)
            except FileExistsError as exc:
                raise AlreadyExistsError(f"{uri}: already exists (create-only write)") from exc
        else:
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _mapped(uri: str, fn, *args):
    """Run a filesystem call, turning OS errors into ours, each naming the URI."""
    try:
        return fn(*args)
    except FileNotFoundError as exc:
        raise NotFoundError(f"{uri}: not found") from exc
    except (NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        raise StorageError(f"{uri}: {exc.strerror or exc}") from exc


def read_bytes(uri: str) -> bytes:
    return _mapped(uri, local_path(uri).read_bytes)


def write_bytes(uri: str, data: bytes, *, create_only: bool = False) -> None:
    final = local_path(uri)
    _mapped(uri, lambda: final.parent.mkdir(parents=True, exist_ok=True))
    tmp = tmp_sibling(final)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _commit(tmp, final, create_only, uri)


def exists(uri: str) -> bool:
    return _mapped(uri, local_path(uri).exists)


def delete(uri: str, *, missing_ok: bool = True) -> None:
    path = local_path(uri)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    elif not missing_ok:
        raise NotFoundError(f"{uri}: not found")


def delete_prefix(uri: str) -> None:
    path = local_path(uri)
    if path.is_dir():
        shutil.rmtree(path)


def list_prefix(uri: str, *, recursive: bool = True) -> list[str]:
    return _mapped(uri, _list_prefix, uri, recursive)


def _list_prefix(uri: str, recursive: bool) -> list[str]:
    root = local_path(uri)
    if not root.is_dir():
        return []
    if not recursive:
        return sorted((e.name + "/" if e.is_dir() else e.name) for e in os.scandir(root) if not is_tmp(e.name))
    out = []
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in files:
            if not is_tmp(name):
                out.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(out)


def _stat_of(st: os.stat_result) -> ObjectStat:
    return ObjectStat(st.st_size, str(st.st_mtime_ns))


def list_stats(uri: str) -> dict[str, ObjectStat]:
    root = local_path(uri)
    return _mapped(uri, lambda: {name: _stat_of((root / name).stat()) for name in list_prefix(uri)})


def stat(uri: str) -> ObjectStat:
    path = local_path(uri)
    st = _mapped(uri, path.stat)
    if not path.is_file():
        raise NotFoundError(f"{uri}: not a file")
    return _stat_of(st)


def list_children(uri: str) -> tuple[dict[str, ObjectStat], set[str]]:
    return _mapped(uri, _list_children, uri)


def _list_children(uri: str) -> tuple[dict[str, ObjectStat], set[str]]:
    root = local_path(uri)
    if not root.is_dir():
        return {}, set()
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    return {e.name: _stat_of(e.stat()) for e in entries if e.is_file()}, {e.name for e in entries if e.is_dir()}


def upload_file(local: Path, uri: str, *, create_only: bool = False) -> None:
    final = local_path(uri)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(final)
    try:
        shutil.copyfile(local, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _commit(tmp, final, create_only, uri)


def download_file(uri: str, tmp: Path) -> None:
    _mapped(uri, shutil.copyfile, local_path(uri), tmp)
