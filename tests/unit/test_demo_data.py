"""The synthetic SA-V generator: deterministic, exact masks, and files in the SA-V formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from savflow.common import demo_data, savformat, storage


def test_seeded_and_deterministic() -> None:
    a = demo_data.generate_video("v", num_frames=8, height=32, width=48, num_objects=3, seed=5)
    b = demo_data.generate_video("v", num_frames=8, height=32, width=48, num_objects=3, seed=5)
    c = demo_data.generate_video("v", num_frames=8, height=32, width=48, num_objects=3, seed=6)
    assert a.frames.shape == (8, 32, 48, 3) and a.masks.shape == (3, 8, 32, 48)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_masks_are_visible_pixels_and_disjoint() -> None:
    v = demo_data.generate_video("v", num_frames=12, height=64, width=64, num_objects=3, seed=1)
    assert (v.masks.sum(axis=0) <= 1).all(), "occluded pixels belong to the object on top only"
    assert v.masks[:, 0].any(axis=(1, 2)).all()
    # pixels of an object show that object's texture, not the background: frames differ there across objects
    moved = np.abs(v.frames[1:].astype(int) - v.frames[:-1].astype(int)).sum(-1) > 0
    assert moved.any()


def test_manual_json_round_trips_through_the_parser() -> None:
    v = demo_data.generate_video("sav_000009", num_frames=10, height=16, width=24, num_objects=2, seed=0)
    ann = savformat.parse_manual_json(json.dumps(demo_data.manual_json(v)))
    assert ann.annotated_frames == [0, 4, 8] and ann.num_objects == 2
    for frame, obj, mask in savformat.iter_object_masks(ann):
        np.testing.assert_array_equal(mask, v.masks[obj, frame])


def test_mp4_decodes_to_the_frames(tmp_path: Path) -> None:
    import av

    v = demo_data.generate_video("v", num_frames=6, height=32, width=32, num_objects=1, seed=2)
    path = demo_data.write_local_mp4(tmp_path / "v.mp4", v.frames)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == demo_data.FPS
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 6
    assert np.abs(np.stack(decoded).astype(int) - v.frames).mean() < 20


def test_split_writers(tmp_path: Path) -> None:
    spec = demo_data.SyntheticSpec(num_videos=2, num_frames=9, height=16, width=16, num_objects=2)
    raw, staged, val = (str(tmp_path / n) for n in ("raw", "staged", "val"))
    assert demo_data.write_raw_train_split(raw, spec) == ["sav_000001", "sav_000002"]
    assert storage.list_prefix(raw) == ["sav_000001.mp4", "sav_000001_manual.json",
                                        "sav_000002.mp4", "sav_000002_manual.json"]
    demo_data.write_staged_train_split(staged, spec)
    names = storage.list_prefix(staged)
    assert "annotations/sav_000002_manual.json" in names and "JPEGImages_24fps/sav_000001/00008.jpg" in names
    demo_data.write_val_split(val, spec)
    names = storage.list_prefix(val)
    assert "Annotations_6fps/sav_000002/001/00008.png" in names
    assert sum(n.startswith("Annotations_6fps/sav_000001/") for n in names) == 2 * 3
    assert storage.read_text(storage.join(val, "video_list.txt")) == "sav_000001\nsav_000002\n"
