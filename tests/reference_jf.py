"""A plain, obviously-correct per-frame SA-V J&F reference, used by the tests and by ``bench_evaluate.py``.

It is the official SA-V benchmark (``sav_dataset/utils/sav_benchmark.py`` in facebookresearch/sam2, itself from
vos-benchmark and davis2017-evaluation) re-told step by step on whole images, one video after another:

* per video, the frames are the sorted file names of the ground-truth folder (per object folder in the SA-V
  layout), the first and last dropped by default; each PNG is read with PIL; SA-V PNGs must hold at most two
  values and are binarised with ``> 0``;
* per frame, the objects are the ``np.unique`` non-zero values of ground truth and prediction, accumulated over
  the frames seen so far, and every object seen so far gets a J and an F for the frame;
* J = IoU, 1 when both masks are empty;
* F: the DAVIS ``seg2bmap`` boundary of each mask, dilated with ``cv2.dilate`` by ``skimage.morphology.disk``
  of radius ``ceil(0.008 * ||(H, W)||)`` (offsets with ``dy**2 + dx**2 <= r**2``); precision and recall with the
  DAVIS conventions for empty boundaries;
* an object's J and F are ``np.mean`` over its frames x100, for objects that were in the ground truth;
* global J, F = the mean over all objects; J&F = (J + F) / 2.

The only departure from the official code: an object that never appears in the ground truth of its evaluated
frames is left out (the official ``consolidate`` stops with an assertion there), and DAVIS-layout objects are named
``f"{value - 1:03d}"`` like the SA-V folders. Slow on purpose (about 12 ms per object and frame at 848x480): it is
the yardstick, not the product.
"""

from __future__ import annotations

import os
from collections import defaultdict

import cv2
import numpy as np
from PIL import Image


def disk(radius: float) -> np.ndarray:
    """``skimage.morphology.disk(radius)``: uint8 square of side 2r+1, 1 where dy**2 + dx**2 <= r**2."""
    r = int(radius)
    coords = np.arange(-r, r + 1)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return (yy ** 2 + xx ** 2 <= radius ** 2).astype(np.uint8)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary mask, exactly as the DAVIS ``_seg2bmap`` (same size)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def get_iou(intersection: int, pixel_sum: int) -> float:
    if intersection == pixel_sum:
        assert intersection == 0
        return 1
    return intersection / (pixel_sum - intersection)


def boundary_f(obj_mask: np.ndarray, obj_gt: np.ndarray, boundary_disk: np.ndarray) -> float:
    mask_boundary = seg2bmap(obj_mask)
    gt_boundary = seg2bmap(obj_gt)
    mask_dilated = cv2.dilate(mask_boundary.astype(np.uint8), boundary_disk)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), boundary_disk)
    gt_match = gt_boundary * mask_dilated
    fg_match = mask_boundary * gt_dilated
    n_fg = np.sum(mask_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


def frame_jf(mask: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(J, F) of one binary prediction against one binary ground truth, on the whole image."""
    boundary_disk = disk(np.ceil(0.008 * np.linalg.norm(mask.shape)))
    j = get_iou((mask * gt).sum(), mask.sum() + gt.sum())
    return j, boundary_f(mask, gt, boundary_disk)


class FrameEvaluator:
    """The official per-frame ``Evaluator``: objects come from the masks' values, frame by frame."""

    def __init__(self) -> None:
        self.objects_in_gt: set = set()
        self.objects_in_masks: set = set()
        self.object_iou: dict = defaultdict(list)
        self.boundary_f: dict = defaultdict(list)

    def feed_frame(self, mask: np.ndarray, gt: np.ndarray) -> None:
        gt_objects = np.unique(gt)
        gt_objects = gt_objects[gt_objects != 0].tolist()
        mask_objects = np.unique(mask)
        mask_objects = mask_objects[mask_objects != 0].tolist()
        self.objects_in_gt.update(set(gt_objects))
        self.objects_in_masks.update(set(mask_objects))
        for obj_idx in self.objects_in_gt | self.objects_in_masks:
            j, f = frame_jf(mask == obj_idx, gt == obj_idx)
            self.object_iou[obj_idx].append(j)
            self.boundary_f[obj_idx].append(f)

    def conclude(self) -> dict:
        """``{object value: (J, F)}`` x100 for the objects seen in the ground truth."""
        return {o: (np.mean(self.object_iou[o]) * 100, np.mean(self.boundary_f[o]) * 100)
                for o in sorted(self.objects_in_gt)}


def _read_pair(gt_path: str, pred_path: str, sav_format: bool) -> tuple[np.ndarray, np.ndarray]:
    assert os.path.exists(pred_path), f"{pred_path} not found"
    gt = np.array(Image.open(gt_path))
    pred = np.array(Image.open(pred_path))
    assert gt.shape[-2:] == pred.shape[-2:], f"shape mismatch: {gt_path}, {pred_path}"
    if sav_format:
        assert len(np.unique(gt)) <= 2, gt_path
        assert len(np.unique(pred)) <= 2, pred_path
        gt, pred = gt > 0, pred > 0
    return gt, pred


def evaluate_video(gt_root: str, pred_root: str, video: str, skip_first_last: bool = True
                   ) -> dict[str, tuple[float, float]]:
    """``{obj: (J, F)}`` x100 of one video in local folders (either layout; the prediction in the ground
    truth's)."""
    vid_gt = os.path.join(gt_root, video)
    vid_pred = os.path.join(pred_root, video)
    names = sorted(os.listdir(vid_gt))
    sav_format = not all(n.endswith(".png") for n in names)
    if sav_format:
        to_evaluate = [(sorted(os.listdir(os.path.join(vid_gt, o))), o, os.path.join(vid_gt, o),
                        os.path.join(vid_pred, o)) for o in names]
    else:
        to_evaluate = [(names, None, vid_gt, vid_pred)]
    out: dict[str, tuple[float, float]] = {}
    for frames, obj, gt_dir, pred_dir in to_evaluate:
        if skip_first_last:
            frames = frames[1:-1]
        evaluator = FrameEvaluator()
        for name in frames:
            gt, pred = _read_pair(os.path.join(gt_dir, name), os.path.join(pred_dir, name), sav_format)
            evaluator.feed_frame(mask=pred, gt=gt)
        for value, scores in evaluator.conclude().items():
            out[obj if sav_format else f"{value - 1:03d}"] = scores
    return out


def evaluate(gt_root: str, pred_root: str, videos: list[str], skip_first_last: bool = True
             ) -> dict[str, dict[str, tuple[float, float]]]:
    """``{video: {obj: (J, F)}}`` x100 for local folders, one video after another."""
    return {v: evaluate_video(gt_root, pred_root, v, skip_first_last) for v in videos}


def global_scores(results: dict[str, dict[str, tuple[float, float]]]) -> tuple[float, float, float]:
    """(J&F, J, F): means over all objects of all videos."""
    js = [j for objs in results.values() for j, _ in objs.values()]
    fs = [f for objs in results.values() for _, f in objs.values()]
    j = float(np.array(js).mean())
    f = float(np.array(fs).mean())
    return (j + f) / 2, j, f

