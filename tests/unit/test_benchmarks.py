"""Benchmark presets (issue 14, point 3): the protocol facts each preset holds, and how a mismatch is named."""

from __future__ import annotations

import pytest

from savflow.common.benchmarks import BENCHMARKS, benchmark, inference_differences


def test_objects_appearing_later_are_tracked_only_where_the_benchmark_has_them() -> None:
    # facebookresearch/sam2 tools/README.md: all objects on frame 0 in DAVIS, MOSE, SA-V; not in LVOS, YouTube-VOS
    assert {n for n, b in BENCHMARKS.items() if b.track_later_objects} == {"lvos", "ytvos"}
    assert all(b.skip_first_last and not b.use_all_masks for b in BENCHMARKS.values())


def test_unknown_benchmark_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'davis2016': expected one of sav, davis, mose, lvos, ytvos"):
        benchmark("davis2016")


def test_inference_differences_compare_only_what_the_marker_records() -> None:
    davis = benchmark("davis")
    assert inference_differences(davis, {"track_later_objects": True, "use_all_masks": False}) == {
        "track_later_objects": (True, False)}
    assert inference_differences(davis, {"score_thresh": 0.0}) == {}
