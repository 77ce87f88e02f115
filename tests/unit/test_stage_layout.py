"""Staged layouts: tar archives indexed by their marker entries, name checks, source scanning."""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from savflow.common import savformat, staged as lay
from savflow.stage import writers
from savflow.stage.raw_split import SourceError, TrainSource, ValSource, scan_source


def test_tar_writer_offsets_sizes_and_hash(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    long_video = "v" * 120  # longer than a plain ustar name field: forces extended headers
    members = {savformat.annotation_path(long_video): b"{}",
               savformat.frames_path(long_video, 0): b"\xff\xd8\xff" + bytes(range(256)) * 5,
               savformat.frames_path(long_video, 4): b"\xff\xd8\xff" + b"x" * 512,
               savformat.frames_path(long_video, 8): b""}
    writer = writers.TarWriter(str(dest), long_video, scratch)
    for name, data in members.items():
        writer.add(name, data)
    extra = writer.finish()
    archive = dest / lay.archive_name(long_video)
    blob = archive.read_bytes()
    assert extra["archive"] == {"name": lay.archive_name(long_video), "size": len(blob),
                                "sha256": hashlib.sha256(blob).hexdigest()}
    assert not list(scratch.iterdir()), "the local archive is removed after upload"
    with tarfile.open(archive) as tar:
        assert [m.name for m in tar.getmembers()] == list(members)
        for name, data in members.items():
            assert tar.extractfile(name).read() == data
    for entry in writer.files:
        data = members[entry["name"]]
        assert blob[entry["offset"]: entry["offset"] + entry["size"]] == data
        assert entry["crc32"] == zlib.crc32(data)
        lay.check_data(entry, data, where="t")


def test_check_data_rejects_changed_bytes() -> None:
    entry = lay.file_entry("a", b"hello")
    with pytest.raises(Exception, match="CRC-32"):
        lay.check_data(entry, b"hellO", where="t")


@pytest.mark.parametrize("name", [
    "JPEGImages_24fps/sav_1/00000.jpg", "JPEGImages_24fps/sav_1/123456.jpg",
    "Annotations_6fps/sav_1/002/00004.png", "annotations/sav_1_manual.json"])
def test_member_names_accepted(name: str) -> None:
    assert lay.check_member(name, "sav_1") == name


@pytest.mark.parametrize("name", [
    "../etc/passwd", "/abs/JPEGImages_24fps/sav_1/00000.jpg", "JPEGImages_24fps/sav_2/00000.jpg",
    "JPEGImages_24fps/sav_1/../../x.jpg", "JPEGImages_24fps/sav_1/0.jpg", "annotations/sav_2_manual.json",
    "Annotations_6fps/sav_1/00004.png", "JPEGImages_24fps/sav_1/00000.jpg/x"])
def test_member_names_rejected(name: str) -> None:
    with pytest.raises(savformat.SavFormatError):
        lay.check_member(name, "sav_1")


def test_dir_writer_removes_files_of_an_earlier_attempt(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    stale = dest / savformat.frames_path("sav_1", 2)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (stale.parent / ".00004.jpg.tmp-0123abcd").write_bytes(b"half")  # a write cut short by a kill
    with ThreadPoolExecutor(4) as pool:
        writer = writers.DirWriter(str(dest), "sav_1", pool, max_in_flight=3)
        for f in range(0, 20, 4):
            writer.add(savformat.frames_path("sav_1", f), bytes([f]))
        writer.finish()
    names = sorted(os.listdir(dest / "JPEGImages_24fps" / "sav_1"))
    assert names == [f"{f:05d}.jpg" for f in range(0, 20, 4)]
    assert (dest / savformat.frames_path("sav_1", 8)).read_bytes() == bytes([8])


def test_scan_train_and_val_sources(tmp_path: Path) -> None:
    train = tmp_path / "train"
    train.mkdir()
    (train / "sav_1.mp4").write_bytes(b"x" * 10)
    (train / "sav_1_manual.json").write_bytes(b"{}")
    (train / "sav_2_manual.json").write_bytes(b"{}")
    (train / "sav_1_auto.json").write_bytes(b"{}")
    src = scan_source(str(train))
    assert isinstance(src, TrainSource)
    assert src.videos() == ["sav_1", "sav_2"]
    assert src.weights() == {"sav_1": 10.0, "sav_2": 0.0}

    val = tmp_path / "val"
    for rel in ["JPEGImages_24fps/a/00000.jpg", "JPEGImages_24fps/a/00001.jpg", "JPEGImages_24fps/b/00000.jpg",
                "JPEGImages_24fps/b/notes.txt", "Annotations_6fps/a/000/00000.png", "Annotations_6fps/b/00000.png"]:
        (val / rel).parent.mkdir(parents=True, exist_ok=True)
        (val / rel).write_bytes(b"")
    src = scan_source(str(val))
    assert isinstance(src, ValSource)
    assert src.frames == {"a": [0, 1], "b": [0]}
    assert src.masks == {"a": {0: [0]}}
    assert set(src.problems) == {"b"} and "notes.txt" in src.problems["b"]
    assert src.weights() == {"a": 2.0, "b": 1.0}

    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no SA-V split"):
        scan_source(str(tmp_path / "empty"))
