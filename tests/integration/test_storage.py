"""The storage API, with the same cases against a temporary directory and a real GCS emulator server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from savflow.common import storage


def test_write_read_round_trip(store_root: str) -> None:
    uri = storage.join(store_root, "a", "b.bin")
    storage.write_bytes(uri, b"\x00\x01payload")
    assert storage.read_bytes(uri) == b"\x00\x01payload"
    storage.write_text(uri, "replaced")
    assert storage.read_text(uri) == "replaced"


def test_missing_object_raises_not_found_naming_uri(store_root: str) -> None:
    uri = storage.join(store_root, "nope.txt")
    with pytest.raises(storage.NotFoundError, match="nope.txt"):
        storage.read_bytes(uri)
    assert not storage.exists(uri)


def test_exists_and_delete(store_root: str) -> None:
    uri = storage.join(store_root, "x.txt")
    storage.write_text(uri, "x")
    assert storage.exists(uri)
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # missing_ok by default
    with pytest.raises(storage.NotFoundError):
        storage.delete(uri, missing_ok=False)


def test_list_prefix_relative_sorted_and_shallow(store_root: str) -> None:
    for name in ["v1/00001.jpg", "v1/00000.jpg", "v2/00000.jpg", "top.txt"]:
        storage.write_text(storage.join(store_root, "split", name), name)
    storage.write_text(storage.join(store_root, "splitx", "other.txt"), "not below split/")
    assert storage.list_prefix(storage.join(store_root, "split")) == [
        "top.txt", "v1/00000.jpg", "v1/00001.jpg", "v2/00000.jpg"]
    assert storage.list_prefix(storage.join(store_root, "split"), recursive=False) == ["top.txt", "v1/", "v2/"]
    assert storage.list_prefix(storage.join(store_root, "empty")) == []


def test_create_only_never_overwrites(store_root: str) -> None:
    uri = storage.join(store_root, "marker.json")
    storage.write_bytes(uri, b"first", create_only=True)
    if storage.is_gcs(uri):
        pytest.skip("the emulator ignores if_generation_match; test_create_only_sends_generation_precondition "
                    "checks what the client sends instead")
    with pytest.raises(storage.AlreadyExistsError, match="marker.json"):
        storage.write_bytes(uri, b"second", create_only=True)
    assert storage.read_bytes(uri) == b"first"


def test_concurrent_create_only_has_one_winner(tmp_path: Path) -> None:
    uri = str(tmp_path / "race.txt")
    wins, losses = [], []

    def attempt(i: int) -> None:
        try:
            storage.write_text(uri, f"writer {i}", create_only=True)
            wins.append(i)
        except storage.AlreadyExistsError:
            losses.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert storage.read_text(uri) == f"writer {wins[0]}"


def test_local_write_leaves_no_temp_file_and_is_atomic(tmp_path: Path, monkeypatch) -> None:
    uri = str(tmp_path / "obj.bin")
    storage.write_bytes(uri, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(uri, b"new")
    assert storage.read_bytes(uri) == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.bin"]


def test_file_scheme_is_a_local_path(tmp_path: Path) -> None:
    storage.write_text(f"file://{tmp_path}/f.txt", "hi")
    assert (tmp_path / "f.txt").read_text() == "hi"
    assert storage.list_prefix(f"file://{tmp_path}") == ["f.txt"]


def test_upload_and_download_file(store_root: str, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 100)
    uri = storage.join(store_root, "files", "src.bin")
    storage.upload_file(src, uri)
    out = storage.download_file(uri, tmp_path / "down" / "copy.bin")
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(storage.NotFoundError):
        storage.download_file(storage.join(store_root, "files", "missing"), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_tree_round_trip(store_root: str, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    names = [f"vid{v}/{f:05d}.jpg" for v in range(3) for f in range(5)] + ["file_list.txt"]
    for i, name in enumerate(names):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(f"content {i}".encode())
    up = storage.upload_tree(src, storage.join(store_root, "tree"), workers=4)
    assert up.files == len(names)
    assert storage.list_prefix(storage.join(store_root, "tree")) == sorted(names)
    dst = tmp_path / "copy"
    down = storage.download_tree(storage.join(store_root, "tree"), dst, workers=4)
    assert (down.files, down.bytes) == (up.files, up.bytes)
    for name in names:
        assert (dst / name).read_bytes() == (src / name).read_bytes()
    partial = storage.download_tree(storage.join(store_root, "tree"), tmp_path / "partial", names=["vid1/00003.jpg"])
    assert partial.files == 1 and (tmp_path / "partial" / "vid1" / "00003.jpg").exists()


def test_delete_prefix(store_root: str) -> None:
    for name in ["p/a", "p/b/c", "q/d"]:
        storage.write_text(storage.join(store_root, name), "x")
    assert storage.delete_prefix(storage.join(store_root, "p")) == 2
    assert storage.list_prefix(store_root) == ["q/d"]


def test_join_and_split() -> None:
    assert storage.join("gs://b/root/", "a/", "/b.txt") == "gs://b/root/a/b.txt"
    assert storage.join("gs://b", "x") == "gs://b/x"
    assert storage.join("/tmp/x", "", "y") == "/tmp/x/y"
    assert storage.split_gcs("gs://bucket/a/b") == ("bucket", "a/b")
    with pytest.raises(storage.StorageError):
        storage.split_gcs("gs:///a")
    with pytest.raises(storage.StorageError):
        storage.local_path("gs://b/a")
