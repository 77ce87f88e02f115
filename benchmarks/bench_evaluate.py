"""Benchmark: ``savflow.evaluate`` against the plain per-frame reference (tests/reference_jf.py), one worker each.

Generates an SA-V-layout set (default 20 videos x 3 objects x 30 annotated frames at 848x480) in a temporary
directory: smooth random blobs of mixed sizes drifting over the frames, some absent at the start; predictions are
the ground truth shifted by a few pixels, grown or shrunk, sometimes with a stray blob or missing. Both
implementations score the same folders in the same run; prints both times, the ratio and the largest difference of
any per-object or global number. Target: ratio >= 10 with max abs difference < 1e-9.

    .venv/bin/python benchmarks/bench_evaluate.py [--videos 20 --objects 3 --frames 30 --height 480 --width 848]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import reference_jf  # noqa: E402  (the tests' reference, importable once tests/ is on the path)

from savflow.common.savformat import encode_object_png  # noqa: E402
from savflow.evaluate.evaluator import evaluate  # noqa: E402
from savflow.evaluate.png import INFLATER  # noqa: E402


def blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random blob in a ``size`` x ``size`` box: low-frequency noise under a radial falloff."""
    coarse = rng.normal(0, 1, (6, 6)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    return field * 0.35 + 1.0 - 1.6 * (yy ** 2 + xx ** 2) > 0.25


def paste(shape: tuple[int, int], shape_mask: np.ndarray, y: int, x: int) -> np.ndarray:
    """``shape_mask`` placed with its top-left at (y, x), clipped to the image."""
    out = np.zeros(shape, dtype=bool)
    h, w = shape_mask.shape
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, shape[0]), min(x + w, shape[1])
    if y0 < y1 and x0 < x1:
        out[y0:y1, x0:x1] = shape_mask[y0 - y:y1 - y, x0 - x:x1 - x]
    return out


def perturb(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted, grown or shrunk, now and then a stray blob, rarely nothing."""
    if rng.random() < 0.03:
        return np.zeros_like(gt)
    dy, dx = rng.integers(-3, 4, size=2)
    pred = np.roll(gt, (int(dy), int(dx)), axis=(0, 1))
    k = int(rng.integers(1, 4))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    op = cv2.dilate if rng.random() < 0.5 else cv2.erode
    pred = op(pred.view(np.uint8), kernel).view(bool)
    if rng.random() < 0.1:
        size = int(rng.integers(10, 40))
        pred = pred | paste(gt.shape, blob(rng, size), int(rng.integers(0, gt.shape[0])),
                            int(rng.integers(0, gt.shape[1])))
    return pred


def generate(root: Path, videos: int, objects: int, frames: int, height: int, width: int, seed: int) -> list[str]:
    """Write ``root/gt`` and ``root/pred`` in the SA-V per-object layout; returns the video ids."""
    rng = np.random.default_rng(seed)
    files: list[tuple[Path, np.ndarray]] = []
    ids = [f"sav_{i:06d}" for i in range(1, videos + 1)]
    for video in ids:
        for obj in range(objects):
            size = int(rng.choice([rng.integers(20, 60), rng.integers(60, 160), rng.integers(160, 360)]))
            size = min(size, height, width)
            shape_mask = blob(rng, size)
            pos = rng.uniform([-size / 4, -size / 4], [height - size * 0.75, width - size * 0.75])
            vel = rng.normal(0, 6, size=2)
            start = int(rng.integers(0, 4)) if rng.random() < 0.3 else 0
            for t in range(frames):
                gt = paste((height, width), shape_mask, int(pos[0]), int(pos[1])) if t >= start \
                    else np.zeros((height, width), dtype=bool)
                pos = pos + vel
                rel = f"{video}/{obj:03d}/{4 * t:05d}.png"
                files.append((root / "gt" / rel, gt))
                files.append((root / "pred" / rel, perturb(rng, gt)))

    def write(item: tuple[Path, np.ndarray]) -> None:
        item[0].parent.mkdir(parents=True, exist_ok=True)
        item[0].write_bytes(encode_object_png(item[1]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, files))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30, help="annotated frames per object")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=848)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    try:
        t0 = time.perf_counter()
        ids = generate(root, args.videos, args.objects, args.frames, args.height, args.width, args.seed)
        print(f"generated {args.videos} videos x {args.objects} objects x {args.frames} frames at "
              f"{args.width}x{args.height} in {time.perf_counter() - t0:.1f}s")
        gt, pred = str(root / "gt"), str(root / "pred")

        cv2.setNumThreads(1)  # one worker each: no OpenCV thread pool behind either
        t0, c0 = time.perf_counter(), time.process_time()
        ref = reference_jf.evaluate(gt, pred, ids)
        t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        ours = evaluate(gt, pred, ids, num_workers=1)
        t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0

        diffs = [abs(a - b) for a, b in zip(reference_jf.global_scores(ref), (ours.global_scores.jf,
                                                                              ours.global_scores.j,
                                                                              ours.global_scores.f))]
        pairs = {(o.video, o.obj): (o.j, o.f) for o in ours.objects}
        ref_pairs = {(v, o): s for v, objs in ref.items() for o, s in objs.items()}
        if pairs.keys() != ref_pairs.keys():
            print(f"FAIL: objects differ: {sorted(pairs.keys() ^ ref_pairs.keys())[:5]}")
            return 1
        diffs += [abs(pairs[k][i] - ref_pairs[k][i]) for k in pairs for i in (0, 1)]
        max_diff = max(diffs)
        per_frame = 1000 / ours.num_frames
        print(f"object-frames scored: {ours.num_frames}; inflater: {INFLATER}")
        print(f"reference (plain per-frame): {t_ref:8.2f} s wall, {c_ref:8.2f} s CPU  "
              f"({t_ref * per_frame:.2f} ms per object-frame)")
        print(f"savflow evaluate, 1 worker:  {t_ours:8.2f} s wall, {c_ours:8.2f} s CPU  "
              f"({t_ours * per_frame:.2f} ms per object-frame)")
        print(f"ratio: {t_ref / t_ours:.1f}x wall, {c_ref / c_ours:.1f}x CPU   max abs difference: {max_diff:.3g}   "
              f"global J&F {ours.global_scores.jf:.3f}")
        ok = max_diff < 1e-9
        print("numbers identical (< 1e-9): " + ("yes" if ok else "NO"))
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
