"""Rebuild the official-evaluator fixture in this folder: ground truth, perturbed predictions, official scores.

    python tests/data/official_eval/regenerate.py fixture
    python tests/data/official_eval/regenerate.py official --sav-dataset /tmp/official/sav_dataset

``fixture`` writes ``gt/`` and ``pred/`` (SA-V per-object PNG layout) from ``tests/data/sav_sample/
sav_000001_manual.json`` with savflow's own reader; it is deterministic. ``official`` runs the official SA-V
evaluator (``sav_dataset/`` of facebookresearch/sam2, which is *not* part of this project: pass the folder of a
checkout; it needs opencv, scikit-image, tqdm, pillow, numpy on the path) on them and writes what its
``benchmark()`` returns, at full precision, to ``official_skip.json`` (default: first and last annotated frames
skipped) and ``official_noskip.json`` (``--do_not_skip_first_and_last_frame``, on video ``sav_000001`` only,
since the other one lacks a prediction for a skipped frame), plus ``results.csv`` as its CLI writes it. Only
those outputs are checked in; see README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MANUAL = HERE.parent / "sav_sample" / "sav_000001_manual.json"

# (video folder, first annotated frame of sav_000001 taken, objects of sav_000001 taken); 8 annotated frames each.
VIDEOS = (("sav_000001", 0, (0, 1, 2)), ("sav_000001_late", 32, (0, 2, 4)))
FRAMES_PER_VIDEO = 8
NO_SKIP_VIDEO = "sav_000001"
DROPPED = ("sav_000001_late", 4, 32)  # (video, obj, frame): no prediction for this first (skipped) frame
EXTRA = (("sav_000001", 0, 2), ("sav_000001", 9, 4))  # predictions the ground truth has no file for (ignored)
AS_L_255 = ("sav_000001", 1, 12)  # this prediction is a greyscale PNG with 255 for the object


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _shift(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(m)
    h, w = m.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = m[max(-dy, 0):h + min(-dy, 0),
                                                                   max(-dx, 0):w + min(-dx, 0)]
    return out


def _blob(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def perturb(kind: str, m: np.ndarray) -> np.ndarray:
    u8 = m.astype(np.uint8)
    if kind == "same":
        return m.copy()
    if kind.startswith("dilate"):
        return cv2.dilate(u8, _disk(int(kind[6:]))).astype(bool)
    if kind.startswith("erode"):
        return cv2.erode(u8, _disk(int(kind[5:]))).astype(bool)
    if kind == "shift":
        return _shift(m, 5, -3)
    if kind == "shift_far":
        return _shift(m, -20, 31)
    if kind == "empty":
        return np.zeros_like(m)
    if kind == "spurious":  # the mask plus a false blob
        return m | _blob(m.shape, 700, 100, 25)
    if kind == "holed":
        ys, xs = np.nonzero(m)
        return m & ~_blob(m.shape, int(ys.mean()), int(xs.mean()), 6) if len(ys) else m.copy()
    raise ValueError(kind)


KINDS = ("same", "dilate3", "erode2", "shift", "empty", "dilate8", "shift_far", "erode6", "spurious", "holed")


def kind_of(video_i: int, obj_i: int, frame_i: int, gt_empty: bool) -> str:
    if gt_empty:  # ground truth empty: alternate an empty prediction (J = F = 1) and a false blob (J = F = 0)
        return "empty" if frame_i % 2 else "spurious"
    return KINDS[(3 * video_i + 5 * obj_i + frame_i) % len(KINDS)]


def _png_p(mask: np.ndarray) -> bytes:
    from savflow.common.savformat import encode_object_png

    return encode_object_png(mask)


def _png_l255(mask: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_fixture(out: Path) -> None:
    from savflow.common.savformat import decode_rle, parse_manual_json

    ann = parse_manual_json(MANUAL.read_bytes(), file=str(MANUAL))
    for sub in ("gt", "pred"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for vi, (video, first, objects) in enumerate(VIDEOS):
        start = first // 4
        for oi, obj in enumerate(objects):
            col = ann.masklet_ids.index(obj)
            for fi in range(FRAMES_PER_VIDEO):
                frame = ann.annotated_frames[start + fi]
                rle = ann.masklet[start + fi][col]
                gt = np.zeros((ann.height, ann.width), bool) if rle is None else decode_rle(rle)
                name = f"{video}/{obj:03d}/{frame:05d}.png"
                _write(out / "gt" / name, _png_p(gt))
                if (video, obj, frame) == DROPPED:
                    continue
                pred = perturb(kind_of(vi, oi, fi, not gt.any()), gt)
                encode = _png_l255 if (video, obj, frame) == AS_L_255 else _png_p
                _write(out / "pred" / name, encode(pred))
    for video, obj, frame in EXTRA:
        _write(out / "pred" / f"{video}/{obj:03d}/{frame:05d}.png", _png_p(_blob((ann.height, ann.width),
                                                                                  200, 200, 40)))


_DRIVER = """
import json, sys
from utils.sav_benchmark import benchmark
gt, pred, skip, out = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
jf, j, f, objs = benchmark([gt], [pred], False, 1, verbose=False, skip_first_and_last=skip)
videos = {v: {o: {"J": float(iou[o]), "F": float(bf[o])} for o in iou} for v, (iou, bf) in objs[0].items()}
json.dump({"skip_first_and_last": skip, "global": {"JF": float(jf[0]), "J": float(j[0]), "F": float(f[0])},
           "videos": videos}, open(out, "w"), indent=1, sort_keys=True)
"""


def run_official(sav_dataset: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(sav_dataset), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        pred = Path(tmp) / "pred"
        shutil.copytree(out / "pred", pred)
        subprocess.run([sys.executable, "-c", _DRIVER, str(out / "gt"), str(pred), "1",
                        str(out / "official_skip.json")], cwd=sav_dataset, env=env, check=True)
        only = Path(tmp) / "pred_noskip"
        shutil.copytree(out / "pred" / NO_SKIP_VIDEO, only / NO_SKIP_VIDEO)
        subprocess.run([sys.executable, "-c", _DRIVER, str(out / "gt"), str(only), "0",
                        str(out / "official_noskip.json")], cwd=sav_dataset, env=env, check=True)
        # the CLI as documented, for its printed table (1 decimal) and results.csv
        subprocess.run([sys.executable, "sav_evaluator.py", "--gt_root", str(out / "gt"), "--pred_root",
                        str(pred), "-n", "1"], cwd=sav_dataset, env=env, check=True)
        shutil.copy(pred / "results.csv", out / "results.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["fixture", "official"])
    parser.add_argument("--sav-dataset", type=Path, help="sav_dataset/ folder of a facebookresearch/sam2 checkout")
    args = parser.parse_args()
    if args.what == "fixture":
        build_fixture(HERE)
    else:
        if args.sav_dataset is None:
            parser.error("official needs --sav-dataset")
        run_official(args.sav_dataset.resolve(), HERE)


if __name__ == "__main__":
    main()
