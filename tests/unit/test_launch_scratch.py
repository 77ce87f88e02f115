"""Each training node's /scratch volume is sized from the staged data, or an explicit size is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from savflow.common import savformat
from savflow.common.demo_data import SyntheticSpec, write_raw_train_split
from savflow.stage.stage import stage
from savflow.launch import scratch


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_staged_bytes_counts_what_a_node_copies(tmp_path: Path, layout: str) -> None:
    raw, staged = str(tmp_path / "raw"), str(tmp_path / "staged")
    videos = write_raw_train_split(raw, SyntheticSpec(num_videos=3, num_frames=16, height=64, width=64))
    stage(raw, staged, sample_rate=savformat.ANN_EVERY, layout=layout, progress=False)
    frames = savformat.split_paths(staged).frames
    everything = scratch.staged_bytes(frames, videos)
    files = [p for p in (tmp_path / "staged").rglob("*") if p.is_file() and "_done" not in p.parts
             and "_reports" not in p.parts and p.name != "file_list.txt"]
    assert everything == sum(p.stat().st_size for p in files)
    assert 0 < scratch.staged_bytes(frames, videos[:1]) < everything


def test_scratch_size_from_the_data_or_checked() -> None:
    tib = 2**40
    assert scratch.scratch_size("", 1.5 * tib) == "1690Gi"  # 1.5 TiB + 10%, whole GiB up
    assert scratch.scratch_size("", 1) == "10Gi"  # the floor
    assert scratch.scratch_size("2Ti", tib) == "2Ti"
    with pytest.raises(scratch.ScratchTooSmall, match=r"train_scratch 500Gi \(500 GiB\) cannot hold .* 1536.0 GiB"):
        scratch.scratch_size("500Gi", 1.5 * tib)
