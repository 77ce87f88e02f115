"""SA-V / DAVIS J&F for one object, numerically identical to the official SA-V benchmark, in time that grows
with the mask and its boundary rather than with the image.

Definitions (``sav_dataset/utils/sav_benchmark.py`` in facebookresearch/sam2, from vos-benchmark and
davis2017-evaluation):

* J is the IoU of prediction and ground truth, 1 when both are empty;
* F is the boundary F-measure: the one-pixel boundary map of each mask (``seg2bmap``) is dilated by
  ``disk(ceil(0.008 * ||(H, W)||))`` with ``cv2.dilate``; precision is the share of predicted boundary pixels
  within the dilated ground-truth boundary, recall the converse; an empty predicted boundary gives precision 1 and
  recall 0, an empty ground-truth boundary the reverse, both empty 1 and 1; F = 0 when precision + recall = 0;
* an object's frame list starts at the first evaluated frame where it is in the ground truth or the prediction;
  it is reported (its mean J and F, x100) only if it was in the ground truth at least once.

How it stays exact in less time: a mask is kept as its bounding box and the pixels inside it (:class:`Mask`;
the evaluator gets them straight from the PNG, :func:`savflow.evaluate.png.decode_mask`), since outside that box
every pixel is 0. Both boundary maps are made over the union of the two boxes grown by one pixel, which holds
every boundary pixel (a 0 pixel is boundary when its east, south or south-east neighbour is 1), as the two
channels of one image (:func:`_f_measure`); matching looks only at the region where a pixel of one map can be
within the radius of the other's box, and settles most pixels with cheap square dilations, the rest with the disk
(:func:`_matched`). Masks that are far apart, identical, empty or whole-image are settled from their boxes and
pixel counts alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

BOUNDARY_FRACTION = 0.008

Box = tuple[int, int, int, int]
"""Inclusive ``(y_min, y_max, x_min, x_max)`` of a mask's non-zero pixels."""


@lru_cache(maxsize=64)
def boundary_radius(shape: tuple[int, ...]) -> int:
    """The matching radius for an image of ``shape`` (H, W): ``ceil(0.008 * sqrt(H**2 + W**2))``, with the same
    float steps as the official ``np.ceil(0.008 * np.linalg.norm(shape))`` (sqrt of an exact integer sum)."""
    height, width = shape[:2]
    return int(math.ceil(BOUNDARY_FRACTION * math.sqrt(height * height + width * width)))


@lru_cache(maxsize=16)
def disk(radius: int) -> np.ndarray:
    """``skimage.morphology.disk(radius)``: a uint8 square of side 2r+1, 1 where ``dy**2 + dx**2 <= r**2``."""
    coords = np.arange(-radius, radius + 1)
    kernel = (coords[:, None] ** 2 + coords[None, :] ** 2 <= radius ** 2).astype(np.uint8)
    kernel.setflags(write=False)
    return kernel


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The DAVIS one-pixel boundary map of a binary mask (same shape, bool).

    A pixel is boundary when it differs from its east, south or south-east neighbour; on the last row only the
    east neighbour counts, on the last column only the south one, and the last pixel never. Away from the last
    row and column that is "the 2x2 block starting here is not uniform": its OR differs from its AND."""
    seg = seg.astype(bool, copy=False)
    b = np.zeros(seg.shape, dtype=bool)
    if seg.shape[0] == 0 or seg.shape[1] == 0:
        return b
    rows_or = seg[:-1] | seg[1:]
    rows_and = seg[:-1] & seg[1:]
    np.not_equal(rows_or[:, :-1] | rows_or[:, 1:], rows_and[:, :-1] & rows_and[:, 1:], out=b[:-1, :-1])
    np.not_equal(seg[-1, :-1], seg[-1, 1:], out=b[-1, :-1])
    np.not_equal(seg[:-1, -1], seg[1:, -1], out=b[:-1, -1])
    return b


def bbox(mask: np.ndarray) -> Box | None:
    """Inclusive bounding box of the non-zero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


class Mask(NamedTuple):
    """One object's mask in one frame, as the evaluator keeps it: the image's shape, the inclusive bounding box
    of its non-zero pixels (None when there are none) and the pixels inside that box (non-zero = object)."""

    shape: tuple[int, int]
    box: Box | None
    pixels: np.ndarray | None

    @classmethod
    def of(cls, mask: np.ndarray) -> Mask:
        """The :class:`Mask` of a whole-image array."""
        return cls.boxed(mask, bbox(mask))

    @classmethod
    def boxed(cls, mask: np.ndarray, box: Box | None) -> Mask:
        """The :class:`Mask` of a whole-image array whose :func:`bbox` is ``box``."""
        if box is None:
            return cls(mask.shape[:2], None, None)
        return cls(mask.shape[:2], box, mask[box[0]:box[1] + 1, box[2]:box[3] + 1])


def _iou(inter: int, total: int) -> float:
    if inter == total:  # only when both masks are empty
        return 1.0
    return inter / (total - inter)


_BLOCK = np.ones((2, 2), np.uint8)


def _grown(box: Box, by: int, shape: tuple[int, ...]) -> Box:
    return max(box[0] - by, 0), min(box[1] + by, shape[0] - 1), max(box[2] - by, 0), min(box[3] + by, shape[1] - 1)


def _has_boundary(mask: Mask, count: int) -> bool:
    """Whether a mask with ``count`` object pixels has a boundary pixel: all but the empty and the full image."""
    return 0 < count < mask.shape[0] * mask.shape[1]


def mask_jf(pred: Mask, gt: Mask) -> tuple[float, float]:
    """(J, F) of one object in one frame from the two :class:`Mask` s (of the same shape)."""
    if pred.box is None and gt.box is None:
        return 1.0, 1.0
    n_pred = int(np.count_nonzero(pred.pixels)) if pred.box is not None else 0
    n_gt = int(np.count_nonzero(gt.pixels)) if gt.box is not None else 0
    inter = 0
    if n_pred and n_gt:
        (py0, py1, px0, px1), (gy0, gy1, gx0, gx1) = pred.box, gt.box
        y0, y1, x0, x1 = max(py0, gy0), min(py1, gy1), max(px0, gx0), min(px1, gx1)
        if y0 <= y1 and x0 <= x1:
            a = pred.pixels[y0 - py0:y1 - py0 + 1, x0 - px0:x1 - px0 + 1]
            b = gt.pixels[y0 - gy0:y1 - gy0 + 1, x0 - gx0:x1 - gx0 + 1]
            inter = int(np.count_nonzero(np.logical_and(a, b)))
    j = _iou(inter, n_pred + n_gt)
    pred_edge, gt_edge = _has_boundary(pred, n_pred), _has_boundary(gt, n_gt)
    if not (pred_edge and gt_edge):  # DAVIS: precision 1 and recall 0 or the reverse (F = 0); both empty, F = 1
        return j, 0.0 if pred_edge or gt_edge else 1.0
    if inter == n_pred == n_gt and pred.box == gt.box:
        return j, 1.0  # the same pixels
    return j, _f_measure(pred, gt)


def _f_measure(pred: Mask, gt: Mask) -> float:
    """The boundary F of two masks that both have a boundary.

    Both boundary maps (:func:`seg2bmap`) are made at once, as the two channels of one image over the masks' box
    grown by one pixel (within the image): its last row (column) is then all zero or the image's last, and there
    repeating it (``BORDER_REPLICATE``) gives a 2x2 block from the pixel that is uniform exactly where seg2bmap's
    rule for the last row (column) says "not boundary"; the boundary is where the block's max (a dilation
    anchored at the pixel) differs from its min: the morphological gradient. Matching (:func:`_matched`) looks
    only where a pixel of either map can be within the radius of the other's box."""
    shape = gt.shape
    radius = boundary_radius(shape)
    pred_box, gt_box = _grown(pred.box, 1, shape), _grown(gt.box, 1, shape)
    (a0, a1, a2, a3), (b0, b1, b2, b3) = _grown(pred_box, radius, shape), _grown(gt_box, radius, shape)
    region = max(a0, b0), min(a1, b1), max(a2, b2), min(a3, b3)
    if region[0] > region[1] or region[2] > region[3]:
        return 0.0  # too far apart for any pixel to match: precision = recall = 0
    y0, y1 = min(pred_box[0], gt_box[0]), max(pred_box[1], gt_box[1])
    x0, x1 = min(pred_box[2], gt_box[2]), max(pred_box[3], gt_box[3])
    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1, 2), np.uint8)
    for channel, mask in enumerate((pred, gt)):
        top, left = mask.box[0] - y0, mask.box[2] - x0
        h, w = mask.pixels.shape
        np.not_equal(mask.pixels, 0, out=canvas[top:top + h, left:left + w, channel].view(bool))
    maps = cv2.morphologyEx(canvas, cv2.MORPH_GRADIENT, _BLOCK, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    n_fg, n_gt = cv2.sumElems(maps)[:2]
    top, bottom = max(region[0], y0) - y0, min(region[1], y1) - y0
    left, right = max(region[2], x0) - x0, min(region[3], x1) - x0
    m_fg, m_gt = _matched(maps[top:bottom + 1, left:right + 1], radius)
    precision, recall = m_fg / n_fg, m_gt / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=16)
def _squares(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """The largest square inside ``disk(radius)`` (half-side a with 2a**2 <= r**2) and the smallest around it."""
    inner = math.isqrt(radius * radius // 2)
    return np.ones((2 * inner + 1,) * 2, np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)


@lru_cache(maxsize=64)
def _ring(radius: int, width: int) -> np.ndarray:
    """Flat offsets, in a two-channel image ``width`` pixels wide, of the pixels of ``disk(radius)`` outside its
    inner square (see :func:`_squares`)."""
    inner = math.isqrt(radius * radius // 2)
    dy, dx = np.nonzero(disk(radius))
    dy, dx = dy - radius, dx - radius
    keep = np.maximum(np.abs(dy), np.abs(dx)) > inner
    offsets = (dy[keep] * width + dx[keep]) * 2
    offsets.setflags(write=False)
    return offsets


_SMALL = 4096  # pixels


def _matched(maps: np.ndarray, radius: int) -> tuple[int, int]:
    """For a two-channel image of boundary maps (prediction, ground truth; 0/1): how many pixels of each have a
    pixel of the other within ``disk(radius)``, i.e. the counts of ``a & cv2.dilate(b, disk(radius))``.

    Square dilations are separable and cheap: a pixel within the inner square's dilation of the other map is
    surely matched, one outside the outer square's surely not. The pixels in between are looked at one by one
    (the other map at the disk's offsets outside the inner square) when they are few, else the disk is dilated
    over the whole image; in a small image the disk is dilated right away. The channels are swapped by viewing
    each pixel as one 16-bit number and swapping its bytes."""
    height, width = maps.shape[:2]
    swapped = maps.view(np.uint16).reshape(height, width).byteswap()  # (ground truth, prediction)
    if height * width <= _SMALL:  # few pixels: the disk itself costs less than the steps below
        reach = np.bitwise_and(cv2.dilate(maps, disk(radius)).view(np.uint16).reshape(height, width), swapped)
        found = cv2.sumElems(reach.view(np.uint8).reshape(height, width, 2))
        return int(found[1]), int(found[0])
    inner, outer = _squares(radius)
    # channel 0: ground-truth pixels near the prediction's (recall); channel 1: the reverse (precision)
    sure = np.bitwise_and(cv2.dilate(maps, inner).view(np.uint16).reshape(height, width), swapped)
    counts = cv2.sumElems(sure.view(np.uint8).reshape(height, width, 2))
    totals = cv2.sumElems(maps)
    if counts[0] == totals[1] and counts[1] == totals[0]:
        return int(counts[1]), int(counts[0])
    maybe = np.bitwise_and(cv2.dilate(maps, outer).view(np.uint16).reshape(height, width), swapped)
    maybe ^= sure
    maybe = maybe.view(np.uint8).reshape(height, width, 2)
    extra = cv2.sumElems(maybe)
    if not (extra[0] or extra[1]):
        return int(counts[1]), int(counts[0])
    ring = _ring(radius, width + 2 * radius)
    if (extra[0] + extra[1]) * ring.size <= 4 * height * width:
        padded = np.zeros((height + 2 * radius, width + 2 * radius, 2), np.uint8)
        padded[radius:radius + height, radius:radius + width] = maps
        at = maybe.view(bool).ravel().nonzero()[0]  # (y * width + x) * 2 + channel: look in the same channel of maps
        pixel = at >> 1
        base = ((pixel // width + radius) * (width + 2 * radius) + pixel % width + radius) * 2 + (at & 1)
        hits = padded.ravel()[base[:, None] + ring].view(bool).any(axis=1)
        found = np.bincount(at & 1, weights=hits, minlength=2)
    else:
        found = cv2.sumElems(np.bitwise_and(cv2.dilate(maps, disk(radius)), maybe))
    return int(counts[1] + found[1]), int(counts[0] + found[0])


def frame_jf(pred: np.ndarray, gt: np.ndarray,
             boxes: tuple[Box | None, Box | None] | None = None) -> tuple[float, float]:
    """(J, F) of one object in one frame; non-zero pixels are foreground, shapes must match.

    ``boxes``: the masks' :func:`bbox` (prediction, ground truth), when the caller already has them."""
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape}, ground truth {gt.shape}")
    pred_box, gt_box = boxes if boxes is not None else (bbox(pred), bbox(gt))
    return mask_jf(Mask.boxed(pred, pred_box), Mask.boxed(gt, gt_box))


@dataclass
class ObjectScores:
    """Per-frame J and F of one object, kept with the official rule for which frames count."""

    frames: list[str] = field(default_factory=list)
    j: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)
    seen: bool = False
    in_gt: bool = False

    def add(self, frame: str, pred: np.ndarray, gt: np.ndarray,
            boxes: tuple[Box | None, Box | None] | None = None) -> None:
        """Score one evaluated frame (``boxes``: the masks' :func:`bbox` if the caller has them). Frames before
        the object first shows up, in either mask, do not count."""
        if pred.shape != gt.shape:
            raise ValueError(f"shape mismatch: prediction {pred.shape}, ground truth {gt.shape}")
        pred_box, gt_box = boxes if boxes is not None else (bbox(pred), bbox(gt))
        self.add_masks(frame, Mask.boxed(pred, pred_box), Mask.boxed(gt, gt_box))

    def add_masks(self, frame: str, pred: Mask, gt: Mask) -> None:
        """:meth:`add` for masks kept as :class:`Mask` (of the same shape)."""
        self.in_gt = self.in_gt or gt.box is not None
        self.seen = self.seen or pred.box is not None or gt.box is not None
        if not self.seen:
            return
        j, f = mask_jf(pred, gt)
        self.frames.append(frame)
        self.j.append(j)
        self.f.append(f)

    @property
    def reported(self) -> bool:
        """Whether the object counts: the official benchmark reports only objects seen in the ground truth."""
        return self.in_gt

    def means(self) -> tuple[float, float]:
        """(J, F) x100 as the official benchmark forms them (``np.mean`` over frames, then x100)."""
        return float(np.mean(self.j)) * 100, float(np.mean(self.f)) * 100
