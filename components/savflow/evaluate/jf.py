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

Why a crop is exact: outside the bounding box of the union of both masks every pixel is 0, so the boundary maps
are 0 everywhere except inside that box grown by one pixel up and left (a 0 pixel is boundary when its east, south
or south-east neighbour is 1). The maps are computed on that crop plus one zero row below and one zero column to
the right, standing in for the image's rows and columns beyond the masks; where the box reaches the image's last
row or column there is no padding there, so the crop's last row or column is the image's and gets ``seg2bmap``'s
special rule for it. Every boundary pixel lies in the crop, so matching boundaries within the crop counts the same
pixels as on the whole image; the matching itself uses cheap square dilations to settle most pixels and the disk
only for the rest (:func:`_matched`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

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


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _crop(mask: np.ndarray, y0: int, y1: int, x0: int, x1: int, pad_bottom: int, pad_right: int) -> np.ndarray:
    out = np.zeros((y1 - y0 + pad_bottom, x1 - x0 + pad_right), dtype=bool)
    np.not_equal(mask[y0:y1, x0:x1], 0, out=out[:y1 - y0, :x1 - x0])
    return out


def _iou(inter: int, total: int) -> float:
    if inter == total:  # only when both masks are empty
        return 1.0
    return inter / (total - inter)


@lru_cache(maxsize=16)
def _squares(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """The largest square inside ``disk(radius)`` (half-side a with 2a**2 <= r**2) and the smallest around it."""
    inner = math.isqrt(radius * radius // 2)
    return np.ones((2 * inner + 1,) * 2, np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)


def _matched(src: np.ndarray, dst: np.ndarray, radius: int) -> int:
    """How many pixels of ``src`` have a pixel of ``dst`` within ``disk(radius)``, i.e. the count of
    ``src & cv2.dilate(dst, disk(radius))``.

    Square dilations are separable and cheap: a pixel within the inner square's dilation is surely matched, one
    outside the outer square's surely not; only the pixels in between get the disk, dilated over their own box
    (grown by the radius, so every ``dst`` pixel that can reach them is in it)."""
    inner, outer = _squares(radius)
    src_u8, dst_u8 = src.view(np.uint8), dst.view(np.uint8)
    sure = cv2.dilate(dst_u8, inner) & src_u8
    maybe = cv2.dilate(dst_u8, outer) & src_u8
    maybe ^= sure
    count = int(np.count_nonzero(sure))
    box = bbox(maybe)
    if box is None:
        return count
    y0, x0 = max(box[0] - radius, 0), max(box[2] - radius, 0)
    y1, x1 = box[1] + radius + 1, box[3] + radius + 1
    near = cv2.dilate(dst_u8[y0:y1, x0:x1], disk(radius))
    return count + int(np.count_nonzero(near & maybe[y0:y1, x0:x1]))


def _f_measure(pred_b: np.ndarray, gt_b: np.ndarray, radius: int) -> float:
    n_fg = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = _matched(pred_b, gt_b, radius) / float(n_fg)
        recall = _matched(gt_b, pred_b, radius) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def frame_jf(pred: np.ndarray, gt: np.ndarray,
             boxes: tuple[Box | None, Box | None] | None = None) -> tuple[float, float]:
    """(J, F) of one object in one frame; non-zero pixels are foreground, shapes must match.

    ``boxes``: the masks' :func:`bbox` (prediction, ground truth), when the caller already has them."""
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape}, ground truth {gt.shape}")
    pred_box, gt_box = boxes if boxes is not None else (bbox(pred), bbox(gt))
    box = _union(pred_box, gt_box)
    if box is None:
        return 1.0, 1.0
    height, width = gt.shape[:2]
    y0, y1 = max(box[0] - 1, 0), box[1] + 1
    x0, x1 = max(box[2] - 1, 0), box[3] + 1
    pad_bottom, pad_right = int(y1 < height), int(x1 < width)
    pred_c = _crop(pred, y0, y1, x0, x1, pad_bottom, pad_right)
    gt_c = _crop(gt, y0, y1, x0, x1, pad_bottom, pad_right)
    n_pred = int(np.count_nonzero(pred_c))
    n_gt = int(np.count_nonzero(gt_c))
    inter = int(np.count_nonzero(pred_c & gt_c))
    j = _iou(inter, n_pred + n_gt)
    f = _f_measure(seg2bmap(pred_c), seg2bmap(gt_c), boundary_radius(gt.shape))
    return j, f


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
        pred_box, gt_box = boxes if boxes is not None else (bbox(pred), bbox(gt))
        self.in_gt = self.in_gt or gt_box is not None
        self.seen = self.seen or pred_box is not None or gt_box is not None
        if not self.seen:
            return
        j, f = frame_jf(pred, gt, (pred_box, gt_box))
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
