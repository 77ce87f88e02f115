"""J&F metric math: answers worked out by hand on 5x5 masks, the empty-mask and empty-boundary conventions, the
frame-counting rule, and agreement with the plain whole-image reference (tests/reference_jf.py) on random masks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from savflow.evaluate import jf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_jf  # noqa: E402

# 2x2 square at rows 1-2, cols 1-2 of a 5x5 image.
SQUARE = np.zeros((5, 5), dtype=bool)
SQUARE[1:3, 1:3] = True
# Its boundary by hand: a pixel is boundary when the 2x2 block it starts is not uniform (so the map sits half a
# pixel up-left of the edge); the last row and column have only zero neighbours here.
SQUARE_BOUNDARY = np.array([
    [1, 1, 1, 0, 0],
    [1, 0, 1, 0, 0],
    [1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
], dtype=bool)


def test_disk_known_shapes() -> None:
    assert jf.disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert jf.disk(2).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]
    assert int(jf.disk(8).sum()) == 197  # lattice points with dy^2 + dx^2 <= 64 (skimage's disk(8))
    np.testing.assert_array_equal(jf.disk(8), reference_jf.disk(8.0))


def test_boundary_radius() -> None:
    assert jf.boundary_radius((480, 848)) == 8  # 0.008 * 974.4 = 7.8
    assert jf.boundary_radius((5, 5)) == 1
    assert jf.boundary_radius((1080, 1920)) == 18  # 0.008 * 2202.9 = 17.6
    for shape in [(480, 848), (720, 1280), (1, 1), (125, 0), (3000, 4000)]:
        assert jf.boundary_radius(shape) == int(np.ceil(0.008 * np.linalg.norm(shape)))


def test_seg2bmap_square_by_hand() -> None:
    np.testing.assert_array_equal(jf.seg2bmap(SQUARE), SQUARE_BOUNDARY)


def test_seg2bmap_border_rules_by_hand() -> None:
    full = np.ones((5, 5), dtype=bool)
    assert not jf.seg2bmap(full).any()  # a mask filling the image has no boundary at all
    last_col = np.zeros((5, 5), dtype=bool)
    last_col[:, 4] = True
    expected = np.zeros((5, 5), dtype=bool)
    expected[:, 3] = True  # column 3 sees the object east; column 4 only compares south (equal); row 4 compares east
    np.testing.assert_array_equal(jf.seg2bmap(last_col), expected)
    corner = np.zeros((5, 5), dtype=bool)
    corner[4, 4] = True
    expected = np.zeros((5, 5), dtype=bool)
    expected[3, 3] = expected[3, 4] = expected[4, 3] = True  # the corner pixel itself is never boundary
    np.testing.assert_array_equal(jf.seg2bmap(corner), expected)


def test_identical_masks() -> None:
    assert jf.frame_jf(SQUARE, SQUARE) == (1.0, 1.0)


def test_shift_by_two_touching_the_border_by_hand() -> None:
    pred = np.zeros((5, 5), dtype=bool)
    pred[1:3, 3:5] = True  # the square moved two columns right, onto the last column
    # pred boundary: rows 0 and 2 at cols 2-4 (col 4 by the last-column rule), row 1 at col 2: 7 pixels.
    # radius 1 (plus-shaped disk): 5 of 7 predicted pixels reach a ground-truth one, 5 of 8 the other way round.
    j, f = jf.frame_jf(pred, SQUARE)
    assert j == 0.0
    precision, recall = 5 / 7, 5 / 8
    assert f == pytest.approx(2 * precision * recall / (precision + recall))
    assert f == pytest.approx(2 / 3)


def test_shift_by_one_by_hand() -> None:
    pred = np.zeros((5, 5), dtype=bool)
    pred[1:3, 2:4] = True
    j, f = jf.frame_jf(pred, SQUARE)
    assert j == pytest.approx(1 / 3)  # 2 shared pixels of 6 in the union
    assert f == 1.0  # every boundary pixel is within one step of the other boundary


@pytest.mark.parametrize("pred, gt, expected", [
    (np.zeros((5, 5), bool), np.zeros((5, 5), bool), (1.0, 1.0)),  # both empty: J = 1, F = 1
    (SQUARE, np.zeros((5, 5), bool), (0.0, 0.0)),  # empty ground truth: precision 0, recall 1
    (np.zeros((5, 5), bool), SQUARE, (0.0, 0.0)),  # empty prediction: precision 1, recall 0
    (np.ones((5, 5), bool), np.ones((5, 5), bool), (1.0, 1.0)),  # both boundaries empty: F = 1
    (SQUARE, np.ones((5, 5), bool), (4 / 25, 0.0)),  # ground-truth boundary empty, predicted not
    (np.ones((5, 5), bool), SQUARE, (4 / 25, 0.0)),
])
def test_empty_mask_and_empty_boundary_conventions(pred, gt, expected) -> None:
    assert jf.frame_jf(pred, gt) == pytest.approx(expected)
    assert reference_jf.frame_jf(pred, gt) == pytest.approx(expected)


def test_non_binary_values_are_foreground() -> None:
    assert jf.frame_jf(SQUARE.astype(np.uint8) * 255, SQUARE.astype(np.uint8)) == (1.0, 1.0)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        jf.frame_jf(np.zeros((4, 5)), np.zeros((5, 5)))


def test_frames_count_from_first_appearance() -> None:
    empty = np.zeros((5, 5), dtype=bool)
    shifted = np.zeros((5, 5), dtype=bool)
    shifted[1:3, 2:4] = True
    scores = jf.ObjectScores()
    scores.add("00000", empty, empty)  # not seen yet: does not count
    scores.add("00004", shifted, SQUARE)  # J = 1/3
    scores.add("00008", empty, empty)  # seen before: counts as J = F = 1
    assert scores.frames == ["00004", "00008"]
    assert scores.reported
    j, f = scores.means()
    assert j == pytest.approx(100 * (1 / 3 + 1) / 2)
    assert f == pytest.approx(100.0)


def test_first_appearance_in_prediction_starts_the_count() -> None:
    empty = np.zeros((5, 5), dtype=bool)
    scores = jf.ObjectScores()
    scores.add("00000", SQUARE, empty)  # a false positive before the object exists: J = F = 0
    scores.add("00004", SQUARE, SQUARE)
    assert scores.means() == pytest.approx((50.0, 50.0))


def test_never_in_ground_truth_is_not_reported() -> None:
    scores = jf.ObjectScores()
    scores.add("00000", SQUARE, np.zeros((5, 5), bool))
    assert not scores.reported


def _blob_masks(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random discs and rectangles, often cut by the image border; sometimes empty."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
        r = rng.uniform(1, 0.6 * max(h, w))
        if rng.random() < 0.5:
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            mask |= (np.abs(yy - cy) <= r * rng.uniform(0.2, 1)) & (np.abs(xx - cx) <= r * rng.uniform(0.2, 1))
    return mask


def test_agrees_with_reference_on_random_blobs() -> None:
    """Image sizes with radius 1..5; masks touching every border; predictions near and far from the truth."""
    rng = np.random.default_rng(1234)
    shapes = [(5, 5), (1, 9), (9, 1), (31, 47), (64, 96), (120, 200), (150, 333), (240, 424)]
    checked = 0
    for shape in shapes:
        for _ in range(25):
            gt = _blob_masks(rng, shape)
            pred = _blob_masks(rng, shape) if rng.random() < 0.3 else np.roll(gt, rng.integers(-6, 7, 2), (0, 1))
            if rng.random() < 0.3:
                pred = pred ^ (rng.random(shape) < 0.01)
            got = jf.frame_jf(pred, gt)
            want = reference_jf.frame_jf(pred, gt)
            assert abs(got[0] - want[0]) < 1e-12 and abs(got[1] - want[1]) < 1e-12, (shape, got, want)
            checked += 1
    assert checked == len(shapes) * 25


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 14), st.integers(1, 14), st.integers(0, 2 ** 32 - 1), st.floats(0.0, 1.0),
       st.floats(0.0, 1.0))
def test_agrees_with_reference_on_random_noise(h: int, w: int, seed: int, p_gt: float, p_pred: float) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.random((h, w)) < p_gt
    pred = rng.random((h, w)) < p_pred
    got = jf.frame_jf(pred, gt)
    want = reference_jf.frame_jf(pred, gt)
    assert abs(got[0] - want[0]) < 1e-12 and abs(got[1] - want[1]) < 1e-12


def test_agrees_with_reference_at_sav_resolution() -> None:
    """Radius 8 with boundaries at every distance from 0 to past the disk, so the inner/outer square shortcut
    and the disk fallback are all exercised."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:480, 0:848]
    for cy, cx, ry, rx in [(200, 400, 120, 180), (470, 840, 60, 90), (0, 0, 100, 50), (240, 424, 300, 500)]:
        gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        for _ in range(3):
            dy, dx = rng.integers(-12, 13, 2)
            pred = ((yy - cy - dy) / (ry + rng.integers(-9, 10))) ** 2 + ((xx - cx - dx) / rx) ** 2 <= 1
            got = jf.frame_jf(pred, gt)
            want = reference_jf.frame_jf(pred, gt)
            assert abs(got[0] - want[0]) < 1e-12 and abs(got[1] - want[1]) < 1e-12
