"""SA-V formats: the real sample annotation, round trips, and bad input naming file, video and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from savflow.common import savformat as sf


@pytest.fixture(scope="module")
def sample_doc(sample_manual_json: Path) -> dict:
    return json.loads(sample_manual_json.read_text())


def test_real_sample_parses(sample_manual_json: Path) -> None:
    ann = sf.parse_manual_json(sample_manual_json.read_bytes(), file=str(sample_manual_json))
    assert ann.video_id == "sav_000001"
    assert (ann.frame_count, ann.height, ann.width) == (483, 848, 480)
    assert ann.num_objects == 5 and ann.masklet_ids == [0, 1, 2, 3, 4]
    assert len(ann.masklet) == 121 and ann.annotated_frames[:3] == [0, 4, 8] and ann.annotated_frames[-1] == 480
    assert ann.size_buckets[:2] == ["medium", "large"]


def test_real_sample_decodes_to_its_recorded_sizes(sample_doc: dict) -> None:
    """masklet_size_abs is the mean area of each object over the frames where it is visible: an independent
    check of the RLE decoding."""
    ann = sf.parse_manual_json(sample_doc)
    areas = {i: [] for i in ann.masklet_ids}
    for _frame, obj, mask in sf.iter_object_masks(ann):
        assert mask.shape == (848, 480) and mask.dtype == bool
        if mask.any():
            areas[obj].append(mask.sum())
    means = [np.mean(areas[i]) for i in ann.masklet_ids]
    np.testing.assert_allclose(means, sample_doc["masklet_size_abs"], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_rle_round_trip(mask: np.ndarray) -> None:
    rle = sf.encode_rle(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(sf.decode_rle(rle), mask)


def test_uncompressed_rle_counts_decode() -> None:
    # column-major runs over a 2x3 image: 1 zero, 3 ones, 2 zeros
    mask = sf.decode_rle({"size": [2, 3], "counts": [1, 3, 2]})
    np.testing.assert_array_equal(mask, [[False, True, False], [True, True, False]])


@settings(max_examples=25, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_object_png_round_trip(mask: np.ndarray) -> None:
    png = sf.encode_object_png(mask)
    np.testing.assert_array_equal(sf.decode_object_png(png), mask)
    assert set(np.unique(sf.decode_png(png))) <= {0, 1}


def test_palette_round_trip_and_object_ids() -> None:
    masks = {0: np.zeros((4, 5), bool), 2: np.zeros((4, 5), bool)}
    masks[0][0, :2] = True
    masks[2][3, 4] = True
    label = sf.objects_to_palette(masks)
    assert label[0, 0] == 1 and label[3, 4] == 3 and label.sum() == 1 + 1 + 3
    back = sf.palette_to_objects(sf.decode_png(sf.encode_palette_png(label)))
    assert sorted(back) == [0, 2]
    for k in masks:
        np.testing.assert_array_equal(back[k], masks[k])


def test_davis_palette_starts_like_davis() -> None:
    assert sf.DAVIS_PALETTE[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]


def test_manual_to_object_pngs_layout(sample_doc: dict) -> None:
    doc = copy.deepcopy(sample_doc)
    doc["masklet"] = doc["masklet"][:2]
    doc["masklet"][1][3] = None
    ann = sf.parse_manual_json(doc)
    out = dict(sf.manual_to_object_pngs(ann))
    assert len(out) == 2 * 5
    assert "Annotations_6fps/sav_000001/000/00000.png" in out
    assert "Annotations_6fps/sav_000001/004/00004.png" in out
    assert not sf.decode_object_png(out["Annotations_6fps/sav_000001/003/00004.png"]).any()
    np.testing.assert_array_equal(sf.decode_object_png(out["Annotations_6fps/sav_000001/001/00004.png"]),
                                  sf.decode_rle(doc["masklet"][1][1]))


def test_paths() -> None:
    assert sf.frames_path("sav_1", 8) == "JPEGImages_24fps/sav_1/00008.jpg"
    assert sf.object_mask_path("sav_1", 3, 12) == "Annotations_6fps/sav_1/003/00012.png"
    assert sf.palette_mask_path("v", 4) == "Annotations_6fps/v/00004.png"
    assert sf.annotation_path("sav_1") == "annotations/sav_1_manual.json"


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/b", "..", ".", "", "a\\b", "x y", 7])
def test_names_that_could_escape_are_rejected(bad) -> None:
    with pytest.raises(sf.SavFormatError, match="not a plain name"):
        sf.check_name(bad)
    with pytest.raises(sf.SavFormatError):
        sf.frames_path(bad, 0)


def _err(doc, file="f.json") -> sf.SavFormatError:
    with pytest.raises(sf.SavFormatError) as info:
        sf.parse_manual_json(doc, file=file)
    return info.value


def test_malformed_json_names_file() -> None:
    err = _err(b'{"video_id": "sav_1", ', file="gs://b/sav_1_manual.json")
    assert err.file == "gs://b/sav_1_manual.json" and "malformed JSON" in str(err)


def test_rle_size_mismatch_names_video_and_field(sample_doc: dict) -> None:
    doc = copy.deepcopy(sample_doc)
    doc["masklet"][7][2]["size"] = [480, 848]
    err = _err(doc)
    assert (err.file, err.video, err.field) == ("f.json", "sav_000001", "masklet[7][2].size")
    assert "[480, 848]" in str(err) and "[848, 480]" in str(err)


def test_wrong_object_count_in_a_frame(sample_doc: dict) -> None:
    doc = copy.deepcopy(sample_doc)
    doc["masklet"][3] = doc["masklet"][3][:4]
    err = _err(doc)
    assert err.field == "masklet[3]" and "4 objects, expected 5" in str(err)


@pytest.mark.parametrize("video_id", ["../x", "/abs", "a/b"])
def test_unsafe_video_id(sample_doc: dict, video_id: str) -> None:
    doc = dict(sample_doc, video_id=video_id)
    assert _err(doc).field == "video_id"


@pytest.mark.parametrize("ids", [[0, 1, 2, 3, -1], [0, 1, 2, 3, "../4"], [0, 0, 1, 2, 3], [0, 1]])
def test_bad_object_ids(sample_doc: dict, ids: list) -> None:
    assert _err(dict(sample_doc, masklet_id=ids)).field == "masklet_id"


@pytest.mark.parametrize("key,value", [("video_frame_count", None), ("video_height", -5), ("video_width", "480"),
                                       ("video_frame_count", 482.5)])
def test_bad_header_numbers(sample_doc: dict, key: str, value) -> None:
    assert _err(dict(sample_doc, **{key: value})).field == key


def test_too_many_annotated_frames(sample_doc: dict) -> None:
    err = _err(dict(sample_doc, video_frame_count=100))
    assert err.field == "masklet" and "at most 25" in str(err)


def test_missing_fields(sample_doc: dict) -> None:
    doc = dict(sample_doc)
    del doc["video_id"]
    assert _err(doc).field == "video_id"
    assert _err(dict(sample_doc, masklet=[])).field == "masklet"
    assert _err([1, 2]).field == "(document)"


def test_video_lists() -> None:
    text = "# SA-V val subset\nsav_000001\n\nsav_000007  # comment\n"
    assert sf.parse_video_list(text) == ["sav_000001", "sav_000007"]
    assert sf.parse_video_list(sf.format_video_list(["b", "a"])) == ["b", "a"]
    with pytest.raises(sf.SavFormatError, match="listed twice"):
        sf.parse_video_list("a\na\n", file="list.txt")
    with pytest.raises(sf.SavFormatError) as info:
        sf.parse_video_list("ok\n../evil\n", file="list.txt")
    assert info.value.file == "list.txt:2"


def test_subsets() -> None:
    assert sf.subset_videos(["c", "a", "b"], None) == ["a", "b", "c"]
    assert sf.subset_videos(["c", "a", "b"], ["b", "c"]) == ["b", "c"]
    with pytest.raises(sf.SavFormatError, match="1 listed videos not found: z"):
        sf.subset_videos(["a"], ["a", "z"], file="val.txt")


def test_a_recorded_stride_is_how_the_masklet_is_read(sample_doc: dict) -> None:
    """``savflow import`` records ``ann_every`` (DAVIS: every frame): stage, evaluate and the PNG writer then put
    entry i on frame i * ann_every, and the length bound is the stride's; SA-V's own files (no key) stay at 4."""
    doc = dict(sample_doc, masklet=sample_doc["masklet"][:10], video_frame_count=10, ann_every=1)
    ann = sf.parse_manual_json(doc)
    assert ann.ann_every == 1 and ann.annotated_frames == list(range(10))
    frames = sorted({name.rsplit("/", 1)[-1] for name, _ in sf.manual_to_object_pngs(ann)})
    assert frames == [f"{i:05d}.png" for i in range(10)]
    assert _err(dict(doc, video_frame_count=9)).field == "masklet"  # 10 entries on every frame of 9 frames
    assert sf.parse_manual_json(dict(doc, ann_every=8, video_frame_count=80)).annotated_frames[:3] == [0, 8, 16]
    assert sf.parse_manual_json(sample_doc).ann_every == sf.ANN_EVERY
    for unusable in (0, "1", True, None):  # not a stride: SA-V's
        assert sf.parse_manual_json(dict(sample_doc, ann_every=unusable)).ann_every == sf.ANN_EVERY
