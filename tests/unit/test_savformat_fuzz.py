"""Bad SA-V annotation JSON, generated: every malformed document is a SavFormatError naming the file, the
video and the field, never another exception (a traceback in a staging pod reads as a bug, not as bad data)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reliability
from savflow.common import savformat

H, W = 6, 5
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=4), max_leaves=12)


def _good() -> dict:
    mask = [[False] * W for _ in range(H)]
    mask[1][2] = True
    import numpy as np

    rle = savformat.encode_rle(np.array(mask))
    return {"video_id": "sav_000001", "video_frame_count": 8, "video_height": H, "video_width": W,
            "masklet": [[rle, None], [None, rle]], "masklet_id": [0, 1], "masklet_num": 2,
            "masklet_size_bucket": ["small", "small"]}


def _check(doc: object) -> None:
    try:
        savformat.parse_manual_json(doc if isinstance(doc, (bytes, str)) else json.dumps(doc), file="x_manual.json")
    except savformat.SavFormatError as exc:
        named = exc.file == "x_manual.json" and exc.field != "?" or exc.field == "(document)"
        reliability.bad_input("stage", rejected_with_name=named)
        assert named, str(exc)


def _accepted_counts(counts: object) -> bool:
    """Put ``counts`` in one RLE: either the reader refuses it naming that field, or it decodes to the frame."""
    doc = _good()
    doc["masklet"][0][0] = {"size": [H, W], "counts": counts}
    try:
        ann = savformat.parse_manual_json(json.dumps(doc), file="x_manual.json")
    except savformat.SavFormatError as exc:
        assert exc.field == "masklet[0][0].counts"
        return False
    assert savformat.decode_rle(ann.masklet[0][0]).shape == (H, W)
    return True


PATHS = ["video_id", "video_frame_count", "video_height", "video_width", "masklet", "masklet_id", "masklet_num",
         "masklet_size_bucket"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(key=st.sampled_from(PATHS), value=JSONISH)
def test_any_top_level_field_of_any_type(key: str, value: object) -> None:
    doc = _good()
    doc[key] = value
    _check(doc)


@settings(max_examples=300, deadline=None)
@given(frame=st.integers(0, 1), obj=st.integers(0, 1), value=JSONISH)
def test_any_masklet_entry(frame: int, obj: int, value: object) -> None:
    doc = _good()
    doc["masklet"][frame][obj] = value
    _check(doc)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["size", "counts"]), value=JSONISH)
def test_any_rle_field(field: str, value: object) -> None:
    doc = _good()
    doc["masklet"][0][0] = {**doc["masklet"][0][0], field: value}
    _check(doc)


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(-5, 40), max_size=8))
def test_uncompressed_counts_must_cover_the_frame(counts: list[int]) -> None:
    if _accepted_counts(counts):
        assert sum(counts) == H * W and min(counts, default=0) >= 0


@settings(max_examples=200, deadline=None)
@given(counts=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12))
def test_compressed_counts_must_decode_to_the_frame(counts: str) -> None:
    _accepted_counts(counts)


@given(data=st.binary(max_size=64))
def test_any_bytes(data: bytes) -> None:
    _check(data)


def test_non_utf8_names_the_document() -> None:
    try:
        savformat.parse_manual_json(b"\xff\xfe{", file="x_manual.json")
    except savformat.SavFormatError as exc:
        assert exc.field == "(document)"
