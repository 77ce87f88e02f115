"""The Google Cloud Storage backend of :mod:`savflow.common.storage` (``gs://bucket/name``).

Every request goes through :func:`_call`, which turns the client's errors (403, 5xx after its retries, missing
credentials, dropped connections) into :class:`~savflow.common.storage_errors.StorageError` naming the URI, so no
google exception escapes to a caller. Listings are consumed inside the mapping, since their pages are fetched
lazily while iterating. Uploads are atomic on GCS; ``create_only`` is the generation precondition
``if_generation_match=0``.

Every call, the transfer_manager helpers' too, gets the retry policy of :func:`retry_policy`. Uploads and
deletes are retried as well (google-cloud-storage 2.x retries them by default only under a generation
precondition): ours replace whole objects with the same bytes, so repeating one is harmless, and a repeated
delete meets 404, which ``missing_ok`` covers. A create-only upload whose first attempt landed but whose answer
was lost comes back 412 on its retry; :func:`_create_only` then reads the object back and counts it as written
when it holds our bytes.
"""

from __future__ import annotations

import base64
import hashlib
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
# Retries of transient failures (429, 408, 500, 502, 503, 504, dropped, reset or truncated connections, timeouts:
# the predicate of google.cloud.storage.retry.DEFAULT_RETRY): exponential backoff with full jitter, from
# RETRY_INITIAL_S doubling up to RETRY_MAXIMUM_S, for at most RETRY_DEADLINE_S per call (per listing page).
RETRY_DEADLINE_S = 120.0
RETRY_INITIAL_S = 1.0
RETRY_MAXIMUM_S = 32.0

# HTTP connections kept per client: the thread pools of staging and the tree transfers run more requests at once
# than urllib3's default pool of 10, which would open and drop a connection for each one beyond it.
HTTP_POOL_SIZE = 64

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
            _widen_pool(_clients[pid])
        return _clients[pid]


def _widen_pool(gcs_client) -> None:
    """Mount an adapter with :data:`HTTP_POOL_SIZE` connections on the client's session (the way Google's
    transfer_manager samples do); retries stay with the client's retry policy."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(pool_connections=HTTP_POOL_SIZE, pool_maxsize=HTTP_POOL_SIZE)
    for scheme in ("https://", "http://"):
        gcs_client._http.mount(scheme, adapter)  # noqa: SLF001 - the session has no public setter


def retry_policy():
    """The retry policy of every GCS call: ``DEFAULT_RETRY`` with the deadline and backoff above (built per call,
    so tests can shorten them)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_DEADLINE_S).with_delay(initial=RETRY_INITIAL_S, maximum=RETRY_MAXIMUM_S,
                                                                   multiplier=2.0)


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


def _create_only(uri: str, upload: Callable[[], Any], ours: Callable[[], bool]) -> None:
    """Run a create-only ``upload``. On 412 the object is looked at: one that ``ours`` finds holding exactly our
    bytes counts as written (our own landed attempt, or an identical write, which comes to the same)."""
    try:
        _call(uri, upload)
    except AlreadyExistsError as exc:
        try:
            if ours():
                return
        except NotFoundError:
            pass
        raise exc


def read_bytes(uri: str) -> bytes:
    return _call(uri, lambda: _blob(uri).download_as_bytes(retry=retry_policy()))


def write_bytes(uri: str, data: bytes, *, create_only: bool = False, content_type: str | None = None) -> None:
    kwargs = {"if_generation_match": 0} if create_only else {}

    def upload() -> None:
        _blob(uri).upload_from_string(data, content_type=content_type or "application/octet-stream",
                                      retry=retry_policy(), **kwargs)

    if create_only:
        _create_only(uri, upload, lambda: read_bytes(uri) == data)
    else:
        _call(uri, upload)


def exists(uri: str) -> bool:
    return _call(uri, lambda: _blob(uri).exists(retry=retry_policy()))


def delete(uri: str, *, missing_ok: bool = True) -> None:
    try:
        _call(uri, lambda: _blob(uri).delete(retry=retry_policy()))
    except NotFoundError:
        if not missing_ok:
            raise


def list_prefix(uri: str, *, recursive: bool = True) -> list[str]:
    bucket, prefix = _prefix(uri)
    if recursive:
        names = _call(uri, lambda: [b.name for b in client().list_blobs(bucket, prefix=prefix, retry=retry_policy())])
        return sorted(n[len(prefix):] for n in names if not n.endswith("/"))

    def children() -> list[str]:
        it = client().list_blobs(bucket, prefix=prefix, delimiter="/", retry=retry_policy())
        files = [b.name[len(prefix):] for b in it if not b.name.endswith("/")]
        return files + [p[len(prefix):] for p in it.prefixes]

    return sorted(_call(uri, children))


def _stat_of(blob) -> ObjectStat:
    return ObjectStat(int(blob.size or 0), str(blob.generation))


def list_stats(uri: str) -> dict[str, ObjectStat]:
    bucket, prefix = _prefix(uri)
    blobs = _call(uri, lambda: [(b.name, _stat_of(b))
                                for b in client().list_blobs(bucket, prefix=prefix, retry=retry_policy())])
    return {name[len(prefix):]: st for name, st in blobs if not name.endswith("/")}


def stat(uri: str) -> ObjectStat:
    bucket, name = split(uri)
    blob = _call(uri, lambda: client().bucket(bucket).get_blob(name, retry=retry_policy())) if name else None
    if blob is None:
        raise NotFoundError(f"{uri}: not found")
    return _stat_of(blob)


def list_children(uri: str) -> tuple[dict[str, ObjectStat], set[str]]:
    bucket, prefix = _prefix(uri)

    def children() -> tuple[dict[str, ObjectStat], set[str]]:
        it = client().list_blobs(bucket, prefix=prefix, delimiter="/", retry=retry_policy())
        files = {b.name[len(prefix):]: _stat_of(b) for b in it if not b.name.endswith("/")}
        return files, {p[len(prefix):].rstrip("/") for p in it.prefixes}

    return _call(uri, children)


def upload_file(local: Path, uri: str, *, create_only: bool = False) -> None:
    blob = _blob(uri)
    if local.stat().st_size >= CHUNKED_UPLOAD_THRESHOLD and not create_only:
        from google.cloud.storage import transfer_manager

        _call(uri, transfer_manager.upload_chunks_concurrently, str(local), blob, chunk_size=CHUNK_SIZE,
              max_workers=8, retry=retry_policy())
        return
    if create_only:
        _create_only(uri, lambda: blob.upload_from_filename(str(local), if_generation_match=0, retry=retry_policy()),
                     lambda: _same_file(uri, local))
    else:
        _call(uri, blob.upload_from_filename, str(local), retry=retry_policy())


def _same_file(uri: str, local: Path) -> bool:
    """Whether the object at ``uri`` holds the bytes of ``local`` (size and MD5; a create-only upload is never a
    composite object, so it has an MD5)."""
    bucket, name = split(uri)
    blob = _call(uri, lambda: client().bucket(bucket).get_blob(name, retry=retry_policy()))
    with local.open("rb") as f:
        md5 = base64.b64encode(hashlib.file_digest(f, "md5").digest()).decode()
    return blob is not None and blob.size == local.stat().st_size and blob.md5_hash == md5


def download_file(uri: str, tmp: Path) -> None:
    _call(uri, lambda: _blob(uri).download_to_filename(str(tmp), retry=retry_policy()))


def upload_tree(local_dir: Path, uri: str, names: list[str], workers: int) -> None:
    from google.cloud.storage import transfer_manager

    bucket, prefix = _prefix(uri)
    results = _call(uri, transfer_manager.upload_many_from_filenames, client().bucket(bucket), names,
                    source_directory=str(local_dir), blob_name_prefix=prefix, max_workers=workers,
                    worker_type=transfer_manager.THREAD, upload_kwargs={"retry": retry_policy()})
    _raise_first(results, uri, names)


def download_tree(uri: str, local_dir: Path, names: list[str], workers: int) -> None:
    from google.cloud.storage import transfer_manager

    bucket, prefix = _prefix(uri)
    for n in names:
        (local_dir / n).parent.mkdir(parents=True, exist_ok=True)
    results = _call(uri, transfer_manager.download_many_to_path, client().bucket(bucket), names,
                    destination_directory=str(local_dir), blob_name_prefix=prefix, max_workers=workers,
                    worker_type=transfer_manager.THREAD, download_kwargs={"retry": retry_policy()})
    _raise_first(results, uri, names)


def _raise_first(results: Iterable[Any], uri: str, names: list[str]) -> None:
    for name, result in zip(names, results):
        if isinstance(result, Exception):
            raise StorageError(f"{uri.rstrip('/')}/{name}: transfer failed: {result}") from result
