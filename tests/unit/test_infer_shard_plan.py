"""Shard planning inputs: video lists and frame/object counts read from the roots' listings.

The LPT planner's own properties are tested with hypothesis in tests/unit/test_sharding.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from savflow.infer.shard_plan import balance_ratio, plan, shard_videos
from savflow.infer.inputs import Sources, VideoCounts


def _tree(root: Path, layout: dict[str, tuple[int, int]]) -> tuple[str, str]:
    """``{video: (frames, objects)}`` -> frames and masks roots with empty placeholder files."""
    frames, masks = root / "JPEGImages_24fps", root / "Annotations_6fps"
    for video, (num_frames, num_objects) in layout.items():
        (frames / video).mkdir(parents=True)
        for t in range(num_frames):
            (frames / video / f"{t:05d}.jpg").write_bytes(b"")
        for obj in range(num_objects):
            (masks / video / f"{obj:03d}").mkdir(parents=True)
            (masks / video / f"{obj:03d}" / "00000.png").write_bytes(b"")
    return str(frames), str(masks)


LAYOUT = {"a": (10, 1), "b": (40, 3), "c": (20, 2), "d": (5, 5), "e": (30, 1)}


def test_counts_from_listings(tmp_path: Path):
    frames, masks = _tree(tmp_path, LAYOUT)
    sources = Sources.resolve(frames, masks)
    assert sources.split is None
    counts = sources.counts(sorted(LAYOUT))
    assert counts == {v: VideoCounts(f, o) for v, (f, o) in LAYOUT.items()}
    assert counts["b"].weight == 120.0


def test_video_missing_from_one_root_is_listed_and_weighs_at_least_one(tmp_path: Path):
    frames, masks = _tree(tmp_path, LAYOUT)
    (Path(masks) / "only_masks" / "000").mkdir(parents=True)
    (Path(frames) / "_done").mkdir()
    sources = Sources.resolve(frames, masks)
    assert sources.videos() == ["a", "b", "c", "d", "e", "only_masks"]
    counts = sources.counts(["only_masks"])
    assert counts["only_masks"] == VideoCounts(0, 1)
    assert counts["only_masks"].weight == 1.0


def test_plan_covers_every_video_once_and_balances(tmp_path: Path):
    frames, masks = _tree(tmp_path, LAYOUT)
    result = plan(frames, masks, 2)
    assert sorted(v for shard in result.shards for v in shard) == sorted(LAYOUT)
    # weights 10, 120, 40, 25, 30 (total 225): LPT puts b alone, the rest (105) together
    assert sorted(result.loads) == [105.0, 120.0]
    assert result.balance == pytest.approx(120 / 112.5)
    doc = json.loads(result.to_json())
    assert doc["shards"] == result.shards and doc["videos"]["b"] == {"frames": 40, "objects": 3}


def test_plan_of_a_given_list_uses_only_those_videos(tmp_path: Path):
    frames, masks = _tree(tmp_path, LAYOUT)
    result = plan(frames, masks, 3, ["a", "c"])
    assert sorted(v for shard in result.shards for v in shard) == ["a", "c"]
    assert sum(1 for shard in result.shards if not shard) == 1


def test_shard_videos_is_deterministic_and_partitions(tmp_path: Path):
    frames, masks = _tree(tmp_path, LAYOUT)
    parts = [shard_videos(frames, masks, None, k, 3) for k in range(3)]
    assert parts == [shard_videos(frames, masks, None, k, 3) for k in range(3)]
    assert sorted(v for part in parts for v in part) == sorted(LAYOUT)
    assert shard_videos(frames, masks, ["e", "a"], 0, 1) == ["e", "a"]
    with pytest.raises(ValueError, match="shard 3"):
        shard_videos(frames, masks, None, 3, 3)


def test_balance_ratio():
    weights = {"a": 3.0, "b": 1.0, "c": 2.0}
    assert balance_ratio([["a"], ["b", "c"]], weights) == 1.0
    assert balance_ratio([["a", "b"], ["c"]], weights) == pytest.approx(4 / 3)
    assert balance_ratio([], {}) == 1.0
