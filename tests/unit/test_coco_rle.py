"""savflow.common.coco_rle against a plain character-by-character reading of the format (pycocotools
``maskApi.c`` ``rleFrString``, told again below), on strings pycocotools wrote from real SA-V masks and on those
strings broken in every way a file can break them; and the reader's errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from savflow.common import coco_rle
from savflow.common.savformat import SavFormatError, parse_manual_json

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sav_sample"


def _runs(text: str) -> list[int] | None:
    """The run lengths of a compressed RLE string, read one character at a time; None when malformed (a
    character outside '0'..'o', a string that stops inside a group, a group of more than 7 characters)."""
    runs: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more, size = 0, 0, True, 0
        while more:
            if pos >= len(text):
                return None
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            size += 1
            if not more and c & 0x10:
                value |= -1 << shift
        if size > 7:
            return None
        runs.append(value + runs[-2] if len(runs) > 2 else value)
    return runs


def _problem(text: str, height: int, width: int) -> str | None:
    runs = _runs(text) if text.isascii() else None
    total = height * width
    if runs is None:
        return coco_rle.NOT_RLE
    if any(r < 0 for r in runs):
        return coco_rle.NEGATIVE
    if runs and max(runs) > total:
        return f"has a run of {max(runs)} pixels, more than the frame's {height} x {width} = {total}"
    if sum(runs) != total:
        return f"runs cover {sum(runs)} pixels, not the frame's {height} x {width} = {total}"
    return None


def _sample_strings() -> tuple[list[str], int, int]:
    doc = json.loads((SAMPLE / "sav_000001_auto.json").read_text())
    texts = [rle["counts"] for frame in doc["masklet"] for rle in frame if rle is not None]
    return texts, int(doc["video_height"]), int(doc["video_width"])


def test_the_reading_matches_pycocotools() -> None:
    """The plain reading above is pycocotools' own: the runs it reads decode to pycocotools' mask."""
    texts, height, width = _sample_strings()
    for text in texts[::50]:
        runs = _runs(text)
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)
        mask = mask_utils.decode({"size": [height, width], "counts": text.encode()}).astype(bool)
        np.testing.assert_array_equal(flat.reshape(width, height).T, mask)


def test_real_strings_are_sound_and_fast_path_agrees() -> None:
    texts, height, width = _sample_strings()
    assert len(texts) > 1000
    assert coco_rle.compressed_problems(texts, height, width) == [None] * len(texts)
    assert [_problem(t, height, width) for t in texts[:200]] == [None] * 200


def _broken(rng: np.random.Generator, text: str) -> str:
    kind = int(rng.integers(0, 9))
    pos = int(rng.integers(0, len(text)))
    if kind == 0:  # any character in its place, inside or outside the alphabet
        return text[:pos] + chr(int(rng.integers(32, 127))) + text[pos + 1:]
    if kind == 1:
        return text[:pos]  # cut short, maybe inside a group
    if kind == 2:
        return text + text[pos:]  # runs added
    if kind == 3:
        return text[:pos] + "\u00e9" + text[pos:]  # not ASCII
    if kind == 4:
        return text[:pos] + "P" * int(rng.integers(1, 10)) + "1" + text[pos:]  # a long group
    if kind == 5:
        return text[:pos] + chr(48 + 0x10 + int(rng.integers(0, 16))) + text[pos:]  # a negative value
    if kind == 6:
        return ""
    if kind == 7:
        return text[:pos] + text[pos + 1:]
    return text[:pos] + "oooooo0" + text[pos:]  # a huge run


@pytest.mark.parametrize("seed", range(4))
def test_broken_strings_get_the_plain_reading_verdict(seed: int) -> None:
    texts, height, width = _sample_strings()
    rng = np.random.default_rng(seed)
    chosen = [texts[i] for i in rng.integers(0, len(texts), 400)]
    broken = [_broken(rng, t) if rng.random() < 0.7 else t for t in chosen]
    want = [_problem(t, height, width) for t in broken]
    assert coco_rle.compressed_problems(broken, height, width) == want
    assert len({w.split()[0] if w else None for w in want}) >= 4  # the verdicts differ, not all one kind
    for k in range(0, 400, 97):  # alone as in a crowd
        assert coco_rle.compressed_problems(broken[k:k + 1], height, width) == want[k:k + 1]


def test_a_large_file_is_checked_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    texts, height, width = _sample_strings()
    rng = np.random.default_rng(9)
    broken = [_broken(rng, t) if rng.random() < 0.3 else t for t in texts]
    whole = coco_rle.compressed_problems(broken, height, width)
    monkeypatch.setattr(coco_rle, "_CHUNK", 5000)  # about 17 strings a part
    assert coco_rle.compressed_problems(broken, height, width) == whole
    assert whole == [_problem(t, height, width) for t in broken]


def test_small_frames_by_hand() -> None:
    # a 2x2 frame: runs 1, 3 -> "13" ; runs 4 -> "4"; runs 0, 4 -> "04"
    assert coco_rle.compressed_problems(["13", "4", "04", "5", "", "1"], 2, 2) == [
        None, None, None, "has a run of 5 pixels, more than the frame's 2 x 2 = 4",
        "runs cover 0 pixels, not the frame's 2 x 2 = 4", "runs cover 1 pixels, not the frame's 2 x 2 = 4"]
    assert coco_rle.compressed_problems(["1\x7f", "1P"], 2, 2) == [coco_rle.NOT_RLE, coco_rle.NOT_RLE]


def test_reader_names_the_first_bad_field() -> None:
    doc = json.loads((SAMPLE / "sav_000001_manual.json").read_text())
    doc["masklet"][3][1]["counts"] = doc["masklet"][3][1]["counts"][:-1] + "\x01"
    doc["masklet"][7][0]["size"] = [1, 2]  # a later fault of another kind
    with pytest.raises(SavFormatError) as err:
        parse_manual_json(doc, file="x_manual.json")
    assert err.value.field == "masklet[3][1].counts" and coco_rle.NOT_RLE in str(err.value)
    doc["masklet"][3][1]["counts"] = doc["masklet"][4][1]["counts"]
    with pytest.raises(SavFormatError) as err:
        parse_manual_json(doc, file="x_manual.json")
    assert err.value.field == "masklet[7][0].size"
