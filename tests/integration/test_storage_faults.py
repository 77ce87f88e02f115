"""The GCS backend through a flaky object store: tests/fault_proxy.py between the client and the emulator answers
429/500/503, resets connections before and after forwarding, stalls and truncates answers.

Every call of :mod:`savflow.common.storage_gcs` passes its retry policy explicitly; these tests check that what
the caller sees does not change under faults, that a create-only write whose answer was lost is not mistaken for
someone else's object, and that a fault which outlasts the retries is a StorageError naming the object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from fault_proxy import KINDS, FaultProxy
from savflow.common import storage, storage_gcs

N = 200


def _payload(i: int) -> bytes:
    return f"object {i}\n".encode() * (i % 5)  # every fifth one empty


def _outcome(fn: Callable[[], Any]) -> Any:
    """What a call gave: its result, or the name of the storage error it raised."""
    try:
        return fn()
    except storage.StorageError as exc:
        return type(exc).__name__


def _exercise(root: str, tmp: Path) -> dict[str, Any]:
    """Every function of savflow.common.storage, many times; returns what the caller saw (no generations, which
    differ from run to run)."""
    out: dict[str, Any] = {}
    uris = [storage.join(root, "objs", str(i % 10), f"{i:03d}.bin") for i in range(N)]
    for i, uri in enumerate(uris):
        storage.write_bytes(uri, _payload(i))
    out["read"] = [storage.read_bytes(uri) for uri in uris]
    markers = [storage.join(root, "_done", f"{i:02d}.json") for i in range(N // 4)]
    for i, uri in enumerate(markers):
        storage.write_bytes(uri, b'{"i": %d}' % i, create_only=True, content_type="application/json")
    # again: the same bytes count as written, other bytes are someone else's object
    out["create_again"] = [_outcome(lambda: storage.write_bytes(uri, b'{"i": %d}' % (i - i % 2), create_only=True))
                           for i, uri in enumerate(markers)]
    out["markers"] = [storage.read_bytes(uri) for uri in markers]
    missing = [storage.join(root, "objs", "none", f"{i}.bin") for i in range(10)]
    out["exists"] = [storage.exists(uri) for uri in uris[:30] + missing]
    stats = {uri: _outcome(lambda: storage.stat(uri)) for uri in uris[:30] + missing}
    out["stat"] = [st if isinstance(st, str) else st.size for st in stats.values()]
    out["list"] = storage.list_prefix(root)
    out["list_top"] = storage.list_prefix(storage.join(root, "objs"), recursive=False)
    listed = storage.list_stats(storage.join(root, "objs"))
    out["list_stats"] = {name: st.size for name, st in listed.items()}
    out["stat_is_listed"] = all(st.version == listed[uri.split("/objs/", 1)[1]].version
                                for uri, st in stats.items() if not isinstance(st, str))
    files, dirs = storage.list_children(storage.join(root, "objs", "3"))
    out["children"] = ({name: st.size for name, st in files.items()}, sorted(dirs))
    out["children_root"] = sorted(storage.list_children(root)[1])

    src = tmp / "src"
    for j in range(24):
        (src / f"d{j % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"d{j % 4}" / f"f{j:02d}.bin").write_bytes(os.urandom(1 + j * 97) if j else b"")
    names = storage.list_prefix(str(src))
    for j, name in enumerate(names[:12]):
        storage.upload_file(src / name, storage.join(root, "files", name), create_only=j % 2 == 0)
    out["upload_again"] = [_outcome(lambda: storage.upload_file(src / name, storage.join(root, "files", name),
                                                                create_only=True)) for name in names[:4]]
    out["download"] = [storage.download_file(storage.join(root, "files", name), tmp / "one" / name).read_bytes()
                       == (src / name).read_bytes() for name in names[:12]]
    out["upload_tree"] = storage.upload_tree(src, storage.join(root, "tree"))
    out["download_tree"] = storage.download_tree(storage.join(root, "tree"), tmp / "down")
    out["tree_same"] = all((tmp / "down" / n).read_bytes() == (src / n).read_bytes() for n in names)

    for uri in uris[::3]:
        storage.delete(uri)
    storage.delete(missing[0])
    out["delete_missing"] = _outcome(lambda: storage.delete(missing[0], missing_ok=False))
    out["delete_prefix"] = storage.delete_prefix(storage.join(root, "objs", "7"))
    out["after"] = storage.list_prefix(root)
    return out


def test_every_storage_function_gives_the_same_results_under_faults(faulty_gcs: tuple[FaultProxy, str],
                                                                      tmp_path: Path) -> None:
    """All of savflow.common.storage at a 15% fault rate of every kind gives what it gives without faults.

    Checked upstream: google/cloud/storage/retry.py (``_should_retry``: 429, 408, 500, 502, 503, 504,
    ConnectionError, ChunkedEncodingError, urllib3 ProtocolError), blob.py (``_do_upload`` turns a
    ConditionalRetryPolicy into None unless a precondition is set; downloads resume with a Range header),
    transfer_manager.py (``upload_kwargs``/``download_kwargs`` reach every blob call)."""
    proxy, bucket = faulty_gcs
    proxy.rate = 0.0
    clean = _exercise(storage.join(bucket, "clean"), tmp_path / "clean")
    assert proxy.summary()["injected"] == 0
    proxy.rate = 0.15
    faulty = _exercise(storage.join(bucket, "faulty"), tmp_path / "faulty")
    assert faulty == clean
    assert clean["create_again"] == [None, "AlreadyExistsError"] * (N // 8)
    assert clean["tree_same"] and all(clean["download"]) and clean["stat_is_listed"]
    summary = proxy.summary()
    assert set(summary["by_kind"]) == set(KINDS), summary
    assert {"GET", "POST", "DELETE"} <= set(summary["by_method"]), summary
    assert summary["injected"] > 100, summary


def test_resumable_upload_sessions_survive_every_fault(faulty_gcs: tuple[FaultProxy, str], tmp_path: Path) -> None:
    """A file over 8 MiB goes up as a resumable session (an initiating POST, then a PUT of the bytes); a fault of
    each kind on either request is survived, and a lost answer to a create-only session is not a conflict.

    Checked upstream: google/cloud/storage/blob.py (``_MAX_MULTIPART_SIZE``, ``_do_resumable_upload``),
    google/cloud/storage/_media/requests/upload.py (``transmit_next_chunk`` retries the PUT)."""
    proxy, bucket = faulty_gcs
    proxy.rate = 0.0
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(8 * 1024 * 1024 + 1))
    for kind in KINDS:
        for method, where in (("POST", "uploadType=resumable"), ("PUT", "upload_id=")):
            uri = storage.join(bucket, f"big-{kind}-{method}.bin")
            proxy.fail_next(kind, method=method, path_contains=where)
            storage.upload_file(src, uri, create_only=method == "PUT")
            assert storage.read_bytes(uri) == src.read_bytes(), (kind, method)
    assert proxy.summary()["injected"] == 2 * len(KINDS)
    assert proxy.requests["PUT"] >= len(KINDS)


def test_create_only_write_whose_answer_was_lost_is_ours(faulty_gcs: tuple[FaultProxy, str],
                                                         tmp_path: Path) -> None:
    """A create-only write that reached GCS but whose answer was lost is retried, meets its own object (412) and
    succeeds; one onto an object someone else wrote still raises AlreadyExistsError and leaves it be.

    Checked upstream: google/cloud/storage/blob.py (``upload_from_string``/``upload_from_filename`` retry with
    ``retry=``; a 412 is ``PreconditionFailed``, not retried), google/cloud/storage/retry.py
    (``DEFAULT_RETRY_IF_GENERATION_SPECIFIED`` retries ``if_generation_match=0`` uploads)."""
    proxy, bucket = faulty_gcs
    proxy.rate = 0.0
    for n, kind in enumerate(("reset_after", "truncate")):
        proxy.fail_next(kind, method="POST", path_contains="/upload/")
        storage.write_bytes(storage.join(bucket, f"_done/{kind}.json"), b'{"ok": 1}', create_only=True)
        assert storage.read_bytes(storage.join(bucket, f"_done/{kind}.json")) == b'{"ok": 1}'
        assert proxy.summary()["preconditions"] == n + 1  # the retry met the object: 412
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(5000))
    proxy.fail_next("reset_after", method="POST", path_contains="/upload/")
    storage.upload_file(src, storage.join(bucket, "files/f.bin"), create_only=True)
    assert proxy.summary()["preconditions"] == 3
    assert storage.read_bytes(storage.join(bucket, "files/f.bin")) == src.read_bytes()

    theirs = storage.join(bucket, "_done/theirs.json")
    storage.write_bytes(theirs, b'{"by": "them"}')
    with pytest.raises(storage.AlreadyExistsError, match="gs://.*/_done/theirs.json"):
        storage.write_bytes(theirs, b'{"by": "us"}', create_only=True)
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(5000))
    with pytest.raises(storage.AlreadyExistsError, match="gs://.*/files/f.bin"):
        storage.upload_file(other, storage.join(bucket, "files/f.bin"), create_only=True)
    assert storage.read_bytes(theirs) == b'{"by": "them"}'
    assert storage.read_bytes(storage.join(bucket, "files/f.bin")) == src.read_bytes()


@pytest.mark.parametrize("kind", ["503", "reset_before"])
def test_a_fault_that_outlasts_the_retries_is_a_storage_error_naming_the_object(
        kind: str, faulty_gcs: tuple[FaultProxy, str], tmp_path: Path, monkeypatch) -> None:
    """With every request faulted, each call gives up after the (shortened) retry deadline with a plain
    StorageError naming the object's (or, for listings, the prefix's) gs:// URI; tree transfers name the file.

    Checked upstream: google/api_core/retry/retry_base.py (``_retry_error_helper``: RetryError once the next
    sleep would pass the deadline), google/cloud/storage/transfer_manager.py (``upload_many``/``download_many``
    return each file's exception as its result)."""
    proxy, bucket = faulty_gcs
    proxy.rate = 0.0
    storage.write_bytes(storage.join(bucket, "a/x.bin"), b"x")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "y.bin").write_bytes(b"y")
    monkeypatch.setattr(storage_gcs, "RETRY_DEADLINE_S", 0.3)
    proxy.rate, proxy.kinds = 1.0, (kind,)
    calls = [
        ("a/x.bin", lambda: storage.read_bytes(storage.join(bucket, "a/x.bin"))),
        ("a/w.bin", lambda: storage.write_bytes(storage.join(bucket, "a/w.bin"), b"w")),
        ("a/c.bin", lambda: storage.write_bytes(storage.join(bucket, "a/c.bin"), b"c", create_only=True)),
        ("a", lambda: storage.list_prefix(storage.join(bucket, "a"))),
        ("a/x.bin", lambda: storage.download_file(storage.join(bucket, "a/x.bin"), tmp_path / "x.bin")),
        ("up/y.bin", lambda: storage.upload_tree(tmp_path / "t", storage.join(bucket, "up"))),
        ("a/x.bin", lambda: storage.download_tree(storage.join(bucket, "a"), tmp_path / "d", names=["x.bin"])),
    ]
    for name, call in calls:
        with pytest.raises(storage.StorageError) as err:
            call()
        assert type(err.value) is storage.StorageError
        assert f"{bucket}/{name}:" in str(err.value), str(err.value)
    assert set(proxy.summary()["by_kind"]) == {kind}
