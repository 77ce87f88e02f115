"""The node-local copy of the staged training data."""

from __future__ import annotations

import json
import threading
import time

import pytest

from savflow.common import storage
from savflow.train import data


@pytest.fixture()
def staged(tmp_path):
    """A staged layout with two videos (three frames each) and a third that only has an annotation."""
    root = tmp_path / "staged"
    for video in ("sav_000001", "sav_000002"):
        for frame in range(3):
            storage.write_bytes(str(root / "JPEGImages_24fps" / video / f"{frame:05d}.jpg"), f"{video}/{frame}".encode())
    for video in ("sav_000001", "sav_000002", "sav_000003"):
        storage.write_text(str(root / "annotations" / f"{video}_manual.json"), json.dumps({"video_id": video}))
    storage.write_text(str(root / "list.txt"), "sav_000002\nsav_000001\n")
    return root


def _prepare(staged, scratch, *, leader=True, file_list="list.txt", timeout=5.0):
    source = data.describe_source(str(staged / "JPEGImages_24fps"), str(staged / "annotations"),
                                  str(staged / file_list) if file_list else None)
    return data.prepare_node_data(source, scratch=scratch, node_leader=leader, timeout_s=timeout, poll_s=0.05)


def test_leader_copies_the_listed_videos(staged, tmp_path):
    local = _prepare(staged, tmp_path / "scratch")
    assert local.videos == ("sav_000002", "sav_000001")
    assert sorted(p.name for p in local.img_folder.iterdir()) == ["sav_000001", "sav_000002"]
    assert (local.img_folder / "sav_000002" / "00002.jpg").read_bytes() == b"sav_000002/2"
    assert sorted(p.name for p in local.gt_folder.iterdir()) == ["sav_000001_manual.json", "sav_000002_manual.json"]
    assert local.file_list.read_text() == "sav_000002\nsav_000001\n"
    assert (local.root / data.READY).exists()


def test_without_a_list_every_annotated_video_is_wanted(staged, tmp_path):
    with pytest.raises(FileNotFoundError, match="sav_000003 has no staged frames"):
        _prepare(staged, tmp_path / "scratch", file_list=None)


def test_a_finished_copy_is_reused(staged, tmp_path):
    first = _prepare(staged, tmp_path / "scratch")
    marker = first.img_folder / "sav_000001" / "00000.jpg"
    marker.write_bytes(b"local")
    again = _prepare(staged, tmp_path / "scratch")
    assert again.root == first.root and marker.read_bytes() == b"local"


def test_a_copy_of_data_replaced_since_is_made_again(staged, tmp_path, caplog):
    """The ready file records what the data was (sizes and versions of every object), not just that a copy
    finished: data rewritten at the same URIs is copied again, with nothing of the old copy left over."""
    first = _prepare(staged, tmp_path / "scratch")
    frames = staged / "JPEGImages_24fps" / "sav_000001"
    (frames / "00002.jpg").unlink()
    time.sleep(0.01)
    storage.write_bytes(str(frames / "00001.jpg"), b"new frame")
    for frame in range(3, 6):
        storage.write_bytes(str(frames / f"{frame:05d}.jpg"), b"longer")
    with caplog.at_level("WARNING", logger="savflow.train.data"):
        again = _prepare(staged, tmp_path / "scratch")
    assert again.root == first.root
    assert "was made from other data (content:" in caplog.text
    assert sorted(p.name for p in (again.img_folder / "sav_000001").iterdir()) == \
        ["00000.jpg", "00001.jpg", "00003.jpg", "00004.jpg", "00005.jpg"]
    assert (again.img_folder / "sav_000001" / "00001.jpg").read_bytes() == b"new frame"


def test_followers_wait_for_the_leader(staged, tmp_path):
    scratch = tmp_path / "scratch"
    results = {}
    follower = threading.Thread(target=lambda: results.update(local=_prepare(staged, scratch, leader=False)))
    follower.start()
    time.sleep(0.3)
    assert "local" not in results
    leader_copy = _prepare(staged, scratch)
    follower.join(timeout=5)
    assert results["local"].root == leader_copy.root


def test_followers_give_up_after_the_timeout(staged, tmp_path):
    with pytest.raises(TimeoutError, match="local rank 0"):
        _prepare(staged, tmp_path / "scratch", leader=False, timeout=0.2)


def test_followers_do_not_take_a_ready_file_of_older_data(staged, tmp_path):
    _prepare(staged, tmp_path / "scratch")
    storage.write_bytes(str(staged / "JPEGImages_24fps" / "sav_000001" / "00003.jpg"), b"more")
    with pytest.raises(TimeoutError, match="for the current data"):
        _prepare(staged, tmp_path / "scratch", leader=False, timeout=0.2)


def test_copies_of_different_video_sets_do_not_mix(staged, tmp_path):
    storage.write_text(str(staged / "one.txt"), "sav_000001\n")
    both = _prepare(staged, tmp_path / "scratch")
    one = _prepare(staged, tmp_path / "scratch", file_list="one.txt")
    assert one.root != both.root and one.videos == ("sav_000001",)
