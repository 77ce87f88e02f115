"""The Google Cloud Storage backend of :mod:`savflow.common.storage` (``gs://bucket/name``).

Every request goes through :func:`_call`, which turns the client's errors (403, 5xx after its retries, missing
credentials, dropped connections) into :class:`~savflow.common.storage_errors.StorageError` naming the URI, so no
google exception escapes to a caller. Listings are consumed inside the mapping, since their pages are fetched
lazily while iterating. Uploads are atomic on GCS; ``create_only`` is the generation precondition
``if_generation_match=0``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from savflow.common import deployment
from savflow.common.storage_errors import AlreadyExistsError, NotFoundError, StorageError
from savflow.common.storage_stat import ObjectStat

GS_SCHEME = "gs://"
# Files at least this large go up as parallel XML multipart chunks (transfer_manager.upload_chunks_concurrently).
CHUNKED_UPLOAD_THRESHOLD = 256 * 1024 * 1024
CHUNK_SIZE = 32 * 1024 * 1024

_client_lock = threading.Lock()
_clients: dict[int, object] = {}


def split(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith(GS_SCHEME):
        raise StorageError(f"{uri}: not a gs:// URI")
    bucket, _, name = uri[len(GS_SCHEME):].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name")
    return bucket, name


def client():
    """One google-cloud-storage client per process (honours ``STORAGE_EMULATOR_HOST`` and the key file of
    ``SAVFLOW_GCP_KEY_FILE``; otherwise Application Default Credentials, e.g. GKE Workload Identity). A key file
    that is not there means "use the default credentials", so one pipeline definition serves both kinds of
    cluster."""
    from google.cloud import storage

    pid = os.getpid()
    with _client_lock:
        if pid not in _clients:
            key_file = os.environ.get(deployment.KEY_FILE_ENV, "")
            if key_file and os.path.isfile(key_file):
                _clients[pid] = storage.Client.from_service_account_json(key_file)
            elif os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                _clients[pid] = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "savflow-local"),
                                               credentials=AnonymousCredentials())
            else:
                _clients[pid] = storage.Client()
        return _clients[pid]


def _call(uri: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the client, turning its errors into ours, each naming the URI."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from requests import exceptions as req_exc

    try:
        return fn(*args, **kwargs)
    except gexc.NotFound as exc:
        raise NotFoundError(f"{uri}: not found") from exc
    except gexc.PreconditionFailed as exc:
        raise AlreadyExistsError(f"{uri}: already exists (create-only write)") from exc
    except (gexc.GoogleAPICallError, gexc.RetryError, auth_exc.GoogleAuthError, req_exc.RequestException) as exc:
        raise StorageError(f"{uri}: {exc}") from exc


def _blob(uri: str):
    bucket, name = split(uri)
    if not name:
        raise StorageError(f"{uri}: no object name")
    return client().bucket(bucket).blob(name)


def _prefix(uri: str) -> tuple[str, str]:
    bucket, prefix = split(uri)
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


def read_bytes(uri: str) -> bytes:
    return _call(uri, lambda: _blob(uri).download_as_bytes())


def write_bytes(uri: str, data: bytes, *, create_only: bool = False, content_type: str | None = None) -> None:
    kwargs = {"if_generation_match": 0} if create_only else {}
    _call(uri, lambda: _blob(uri).upload_from_string(data, content_type=content_type or "application/octet-stream",
                                                     **kwargs))


def exists(uri: str) -> bool:
    return _call(uri, lambda: _blob(uri).exists())


def delete(uri: str, *, missing_ok: bool = True) -> None:
    try:
        _call(uri, lambda: _blob(uri).delete())
    except NotFoundError:
        if not missing_ok:
            raise


def list_prefix(uri: str, *, recursive: bool = True) -> list[str]:
    bucket, prefix = _prefix(uri)
    if recursive:
        names = _call(uri, lambda: [b.name for b in client().list_blobs(bucket, prefix=prefix)])
        return sorted(n[len(prefix):] for n in names if not n.endswith("/"))

    def children() -> list[str]:
        it = client().list_blobs(bucket, prefix=prefix, delimiter="/")
        files = [b.name[len(prefix):] for b in it if not b.name.endswith("/")]
        return files + [p[len(prefix):] for p in it.prefixes]

    return sorted(_call(uri, children))


def _stat_of(blob) -> ObjectStat:
    return ObjectStat(int(blob.size or 0), str(blob.generation))


def list_stats(uri: str) -> dict[str, ObjectStat]:
    bucket, prefix = _prefix(uri)
    blobs = _call(uri, lambda: [(b.name, _stat_of(b)) for b in client().list_blobs(bucket, prefix=prefix)])
    return {name[len(prefix):]: st for name, st in blobs if not name.endswith("/")}


def stat(uri: str) -> ObjectStat:
    bucket, name = split(uri)
    blob = _call(uri, lambda: client().bucket(bucket).get_blob(name)) if name else None
    if blob is None:
        raise NotFoundError(f"{uri}: not found")
    return _stat_of(blob)


def list_children(uri: str) -> tuple[dict[str, ObjectStat], set[str]]:
    bucket, prefix = _prefix(uri)

    def children() -> tuple[dict[str, ObjectStat], set[str]]:
        it = client().list_blobs(bucket, prefix=prefix, delimiter="/")
        files = {b.name[len(prefix):]: _stat_of(b) for b in it if not b.name.endswith("/")}
        return files, {p[len(prefix):].rstrip("/") for p in it.prefixes}

    return _call(uri, children)


def upload_file(local: Path, uri: str, *, create_only: bool = False) -> None:
    blob = _blob(uri)
    if local.stat().st_size >= CHUNKED_UPLOAD_THRESHOLD and not create_only:
        from google.cloud.storage import transfer_manager

        _call(uri, transfer_manager.upload_chunks_concurrently, str(local), blob, chunk_size=CHUNK_SIZE,
              max_workers=8)
        return
    kwargs = {"if_generation_match": 0} if create_only else {}
    _call(uri, blob.upload_from_filename, str(local), **kwargs)


def download_file(uri: str, tmp: Path) -> None:
    _call(uri, lambda: _blob(uri).download_to_filename(str(tmp)))


def upload_tree(local_dir: Path, uri: str, names: list[str], workers: int) -> None:
    from google.cloud.storage import transfer_manager

    bucket, prefix = _prefix(uri)
    results = _call(uri, transfer_manager.upload_many_from_filenames, client().bucket(bucket), names,
                    source_directory=str(local_dir), blob_name_prefix=prefix, max_workers=workers,
                    worker_type=transfer_manager.THREAD)
    _raise_first(results, uri, names)


def download_tree(uri: str, local_dir: Path, names: list[str], workers: int) -> None:
    from google.cloud.storage import transfer_manager

    bucket, prefix = _prefix(uri)
    for n in names:
        (local_dir / n).parent.mkdir(parents=True, exist_ok=True)
    results = _call(uri, transfer_manager.download_many_to_path, client().bucket(bucket), names,
                    destination_directory=str(local_dir), blob_name_prefix=prefix, max_workers=workers,
                    worker_type=transfer_manager.THREAD)
    _raise_first(results, uri, names)


def _raise_first(results: Iterable[Any], uri: str, names: list[str]) -> None:
    for name, result in zip(names, results):
        if isinstance(result, Exception):
            raise StorageError(f"{uri.rstrip('/')}/{name}: transfer failed: {result}") from result
