"""One small storage API over URIs: ``gs://bucket/prefix`` (google-cloud-storage) and local paths.

Every pipeline step reads and writes through these functions, so a local run uses a directory where a cluster
run uses a bucket. Guarantees both back ends keep:

* a write is never visible half-done under its final name (local: temp file + rename; GCS: uploads are atomic);
* ``create_only=True`` never overwrites (local: hard link, which fails if the name exists; GCS: generation
  precondition ``if_generation_match=0``) and raises :class:`AlreadyExistsError` instead;
* ``list_prefix`` returns names relative to the prefix, with ``/`` separators, sorted.

Trees move in parallel: ``google.cloud.storage.transfer_manager`` for GCS, a thread pool for local copies.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from savflow.common import deployment

GS_SCHEME = "gs://"
FILE_SCHEME = "file://"
# Files at least this large go up as parallel XML multipart chunks (transfer_manager.upload_chunks_concurrently).
CHUNKED_UPLOAD_THRESHOLD = 256 * 1024 * 1024
CHUNK_SIZE = 32 * 1024 * 1024


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI."""


class NotFoundError(StorageError, FileNotFoundError):
    """The object or file does not exist."""


class AlreadyExistsError(StorageError, FileExistsError):
    """A create-only write found the name taken."""


def is_gcs(uri: str) -> bool:
    return uri.startswith(GS_SCHEME)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/`` (local paths too), ignoring empty parts."""
    out = uri.rstrip("/") if uri not in ("/", "") else uri
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}" if out not in ("", "/") else f"{out}{part}"
    return out


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (plain path or ``file://``)."""
    if is_gcs(uri):
        raise StorageError(f"{uri}: not a local path")
    return Path(uri[len(FILE_SCHEME):] if uri.startswith(FILE_SCHEME) else uri)


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not is_gcs(uri):
        raise StorageError(f"{uri}: not a gs:// URI")
    bucket, _, name = uri[len(GS_SCHEME):].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name")
    return bucket, name


_client_lock = threading.Lock()
_clients: dict[int, object] = {}


# A service-account key file that is used when it exists (clusters without Workload Identity mount one there);
# unlike GOOGLE_APPLICATION_CREDENTIALS, a missing file means "use the default credentials", not an error, so
# one pipeline definition serves both kinds of cluster.
KEY_FILE_ENV = deployment.KEY_FILE_ENV


def gcs_client():
    """One google-cloud-storage client per process (honours ``STORAGE_EMULATOR_HOST`` and
    ``SAVFLOW_GCP_KEY_FILE``; otherwise Application Default Credentials, e.g. GKE Workload Identity)."""
    from google.cloud import storage

    pid = os.getpid()
    with _client_lock:
        if pid not in _clients:
            key_file = os.environ.get(KEY_FILE_ENV, "")
            if key_file and os.path.isfile(key_file):
                _clients[pid] = storage.Client.from_service_account_json(key_file)
            elif os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                _clients[pid] = storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT", "savflow-local"),
                    credentials=AnonymousCredentials(),
                )
            else:
                _clients[pid] = storage.Client()
        return _clients[pid]


def _blob(uri: str):
    bucket, name = split_gcs(uri)
    if not name:
        raise StorageError(f"{uri}: no object name")
    return gcs_client().bucket(bucket).blob(name)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


def _local_commit(tmp: Path, final: Path, create_only: bool, uri: str) -> None:
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


def _gcs_call(uri: str, fn, *args, **kwargs):
    """Call the client, turning its errors into ours, each naming the URI (403, 5xx, missing credentials)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    try:
        return fn(*args, **kwargs)
    except gexc.NotFound as exc:
        raise NotFoundError(f"{uri}: not found") from exc
    except gexc.PreconditionFailed as exc:
        raise AlreadyExistsError(f"{uri}: already exists (create-only write)") from exc
    except (gexc.GoogleAPICallError, auth_exc.GoogleAuthError) as exc:
        raise StorageError(f"{uri}: {exc}") from exc


def read_bytes(uri: str) -> bytes:
    if is_gcs(uri):
        return _gcs_call(uri, _blob(uri).download_as_bytes)
    try:
        return local_path(uri).read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{uri}: not found") from exc


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes, *, create_only: bool = False, content_type: str | None = None) -> None:
    """Write ``data`` atomically; with ``create_only`` fail rather than replace an existing object."""
    if is_gcs(uri):
        kwargs = {"if_generation_match": 0} if create_only else {}
        _gcs_call(uri, _blob(uri).upload_from_string, data,
                  content_type=content_type or "application/octet-stream", **kwargs)
        return
    final = local_path(uri)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _local_commit(tmp, final, create_only, uri)


def write_text(uri: str, text: str, *, create_only: bool = False) -> None:
    write_bytes(uri, text.encode("utf-8"), create_only=create_only, content_type="text/plain; charset=utf-8")


def exists(uri: str) -> bool:
    if is_gcs(uri):
        return _blob(uri).exists()
    return local_path(uri).exists()


def delete(uri: str, *, missing_ok: bool = True) -> None:
    if is_gcs(uri):
        try:
            _gcs_call(uri, _blob(uri).delete)
        except NotFoundError:
            if not missing_ok:
                raise
        return
    path = local_path(uri)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    elif not missing_ok:
        raise NotFoundError(f"{uri}: not found")


def delete_prefix(uri: str) -> int:
    """Delete every object below ``uri``; returns how many were deleted."""
    names = list_prefix(uri)
    if is_gcs(uri):
        for name in names:
            delete(join(uri, name))
    else:
        path = local_path(uri)
        if path.is_dir():
            shutil.rmtree(path)
    return len(names)


def list_prefix(uri: str, *, recursive: bool = True) -> list[str]:
    """Names below ``uri`` relative to it, sorted; ``recursive=False`` gives the direct children only
    (sub-folders end with ``/``). Local temp files of in-flight writes are never listed."""
    if is_gcs(uri):
        bucket, prefix = split_gcs(uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        client = gcs_client()
        if recursive:
            blobs = client.list_blobs(bucket, prefix=prefix)
            return sorted(b.name[len(prefix):] for b in blobs if not b.name.endswith("/"))
        it = client.list_blobs(bucket, prefix=prefix, delimiter="/")
        files = [b.name[len(prefix):] for b in it if not b.name.endswith("/")]
        dirs = [p[len(prefix):] for p in it.prefixes]
        return sorted(files + dirs)
    root = local_path(uri)
    if not root.is_dir():
        return []
    if not recursive:
        return sorted(
            (e.name + "/" if e.is_dir() else e.name) for e in os.scandir(root) if not _is_tmp(e.name)
        )
    out = []
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in files:
            if _is_tmp(name):
                continue
            out.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(out)


def list_sizes(uri: str) -> dict[str, int]:
    """Every object below ``uri`` with its size in bytes, names relative to it (one listing; the sizes come in
    the same responses as the names)."""
    if is_gcs(uri):
        bucket, prefix = split_gcs(uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        blobs = _gcs_call(uri, lambda: list(gcs_client().list_blobs(bucket, prefix=prefix)))
        return {b.name[len(prefix):]: int(b.size or 0) for b in blobs if not b.name.endswith("/")}
    root = local_path(uri)
    return {name: (root / name).stat().st_size for name in list_prefix(uri)}


def _is_tmp(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def upload_file(local: str | Path, uri: str, *, create_only: bool = False) -> None:
    """Copy one local file to ``uri`` (large files to GCS in parallel chunks)."""
    local = Path(local)
    if is_gcs(uri):
        blob = _blob(uri)
        if local.stat().st_size >= CHUNKED_UPLOAD_THRESHOLD and not create_only:
            from google.cloud.storage import transfer_manager

            transfer_manager.upload_chunks_concurrently(str(local), blob, chunk_size=CHUNK_SIZE, max_workers=8)
            return
        kwargs = {"if_generation_match": 0} if create_only else {}
        _gcs_call(uri, blob.upload_from_filename, str(local), **kwargs)
        return
    final = local_path(uri)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    try:
        shutil.copyfile(local, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _local_commit(tmp, final, create_only, uri)


def download_file(uri: str, local: str | Path) -> Path:
    """Copy ``uri`` to a local file, atomically (temp name, then rename)."""
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(local)
    try:
        if is_gcs(uri):
            _gcs_call(uri, _blob(uri).download_to_filename, str(tmp))
        else:
            try:
                shutil.copyfile(local_path(uri), tmp)
            except FileNotFoundError as exc:
                raise NotFoundError(f"{uri}: not found") from exc
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
    total = sum((local_dir / n).stat().st_size for n in rel)
    if not rel:
        return TreeResult(0, 0)
    if is_gcs(uri):
        from google.cloud.storage import transfer_manager

        bucket_name, prefix = split_gcs(uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        results = transfer_manager.upload_many_from_filenames(
            gcs_client().bucket(bucket_name), rel, source_directory=str(local_dir), blob_name_prefix=prefix,
            max_workers=workers, worker_type=transfer_manager.THREAD,
        )
        _raise_first(results, uri, rel)
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
        from google.cloud.storage import transfer_manager

        bucket_name, prefix = split_gcs(uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for n in rel:
            (local_dir / n).parent.mkdir(parents=True, exist_ok=True)
        results = transfer_manager.download_many_to_path(
            gcs_client().bucket(bucket_name), rel, destination_directory=str(local_dir), blob_name_prefix=prefix,
            max_workers=workers, worker_type=transfer_manager.THREAD,
        )
        _raise_first(results, uri, rel)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda n: download_file(join(uri, n), local_dir / n), rel))
    total = sum((local_dir / n).stat().st_size for n in rel)
    return TreeResult(len(rel), total)


def _raise_first(results: list, uri: str, names: list[str]) -> None:
    for name, result in zip(names, results):
        if isinstance(result, Exception):
            raise StorageError(f"{join(uri, name)}: transfer failed: {result}") from result
