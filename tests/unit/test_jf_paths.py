"""The shortcuts of the J&F computation (savflow.evaluate.jf) against the plain whole-image reference: boundary
matching by each of its routes (a small image's disk, the inner square alone, the squares and a pixel-by-pixel
look at the rest, the squares and the disk), masks kept as boxes, and the cases settled from boxes and counts."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from savflow.evaluate import jf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_jf  # noqa: E402

SHAPE = (480, 848)  # radius 8


def _brute(maps: np.ndarray, radius: int) -> tuple[int, int]:
    """(prediction pixels matched, ground-truth pixels matched) with the disk dilated over the whole image."""
    pred, gt = np.ascontiguousarray(maps[:, :, 0]), np.ascontiguousarray(maps[:, :, 1])
    kernel = jf.disk(radius)
    return (int(np.count_nonzero(pred & cv2.dilate(gt, kernel))),
            int(np.count_nonzero(gt & cv2.dilate(pred, kernel))))


def _maps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return np.stack([jf.seg2bmap(pred), jf.seg2bmap(gt)], axis=-1).astype(np.uint8)


def _ellipse(shape, cy, cx, ry, rx) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


@pytest.mark.parametrize("case", ["small", "inner square", "ring", "disk"])
def test_each_matching_route_counts_as_the_disk(case: str) -> None:
    rng = np.random.default_rng(5)
    shape = (40, 60) if case == "small" else (200, 300)
    gt = _ellipse(shape, shape[0] / 2, shape[1] / 2, shape[0] / 3, shape[1] / 3)
    if case == "small":
        pred = np.roll(gt, (3, -7), axis=(0, 1))
    elif case == "inner square":
        pred = np.roll(gt, (2, 1), axis=(0, 1))  # every boundary pixel within 5 of the other's
    elif case == "ring":
        pred = np.roll(gt, (6, 3), axis=(0, 1))
    else:  # thin stripes 7 apart: every boundary pixel is 6 to 8 from the other's, too many to look up one by one
        gt = np.zeros(shape, bool)
        gt[:, ::16] = True
        gt[rng.random(shape) < 0.01] = True
        pred = np.roll(gt, 7, axis=1)
    maps = _maps(pred, gt)
    assert (case == "small") == (maps.shape[0] * maps.shape[1] <= jf._SMALL)
    assert jf._matched(maps, 8) == _brute(maps, 8)


@pytest.mark.parametrize("seed", range(8))
def test_random_maps_match_the_disk(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(60, 160)), int(rng.integers(60, 200))
    gt = _ellipse((h, w), h / 2, w / 2, h / 3, w / 4)
    pred = np.roll(gt, tuple(int(v) for v in rng.integers(-12, 13, 2)), axis=(0, 1))
    if seed % 2:
        pred = pred ^ (rng.random((h, w)) < 0.02)
    for radius in (3, 8, 12):
        maps = _maps(pred, gt)
        assert jf._matched(maps, radius) == _brute(maps, radius)


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    got = jf.frame_jf(pred, gt)
    want = reference_jf.frame_jf(pred, gt)
    assert abs(got[0] - want[0]) < 1e-12 and abs(got[1] - want[1]) < 1e-12, (got, want)


def test_settled_from_boxes_and_counts() -> None:
    gt = _ellipse(SHAPE, 100, 100, 40, 30)
    empty, full = np.zeros(SHAPE, bool), np.ones(SHAPE, bool)
    _check(gt, gt)  # identical
    _check(np.roll(gt, (300, 600), axis=(0, 1)), gt)  # far apart
    _check(np.roll(gt, (0, 75), axis=(0, 1)), gt)  # just beyond the radius of each other's box
    _check(np.roll(gt, (0, 68), axis=(0, 1)), gt)  # just within
    for a, b in [(empty, gt), (gt, empty), (full, gt), (gt, full), (full, full), (full, empty), (empty, full)]:
        _check(a, b)


def test_a_far_blob_and_the_object() -> None:
    """A prediction with a stray blob far away: its box spans much of the frame, the matching region does not."""
    gt = _ellipse(SHAPE, 400, 700, 60, 90)
    for dy, dx in [(0, 0), (4, -3), (9, 2)]:
        pred = np.roll(gt, (dy, dx), axis=(0, 1)) | _ellipse(SHAPE, 30, 40, 20, 25)
        _check(pred, gt)
        _check(gt, pred)


def test_masks_touching_the_image_borders() -> None:
    for cy, cx in [(0, 0), (479, 847), (0, 847), (479, 0), (240, 0), (0, 424)]:
        gt = _ellipse(SHAPE, cy, cx, 80, 120)
        for dy, dx in [(0, 0), (3, 5), (-7, 2), (10, -10)]:
            _check(np.roll(gt, (dy, dx), axis=(0, 1)) & _ellipse(SHAPE, cy, cx, 200, 200), gt)


def test_mask_kept_as_box_scores_as_the_whole_image() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        gt = _ellipse(SHAPE, *rng.uniform(0, 480, 1), *rng.uniform(0, 848, 1), *rng.uniform(5, 200, 2))
        pred = np.roll(gt, tuple(int(v) for v in rng.integers(-15, 16, 2)), axis=(0, 1))
        values = np.where(pred, np.uint8(255), np.uint8(0))  # as a grey PNG holds it: non-zero is the object
        assert jf.mask_jf(jf.Mask.of(values), jf.Mask.of(gt.astype(np.uint8))) == jf.frame_jf(pred, gt)
        _check(pred, gt)
