"""Benchmark: ``savflow evaluate`` against the plain per-frame reference (tests/reference_jf.py), one worker each,
on two sets, each measured in the same run:

``real``: masks decoded at native size (848x480 portrait) from a real SA-V annotation,
tests/data/sav_sample/sav_000001_manual.json (5 objects) and its _auto.json (9 masklets) as two videos, 121
annotated frames each, every object on every frame (empty where the JSON has none). Predictions are made from the
ground truth frame by frame: exact copies, dilations and erosions (1-24 px), shifts (up to 60 px), shift plus
dilation or erosion, dropped frames (the mask of an annotated frame 1-6 steps earlier held), added blobs (some
covering much of the frame), lost objects (empty masks) and false positives where the object is absent, so that J
and F cover the whole range from 0 to 1. The files are written as users' tools write them, mixed per object
folder: PIL mode L (0/255, with PNG row filters), PIL mode P (0/1 with the DAVIS palette, unfiltered), PIL mode 1
(1-bit, filtered) and OpenCV ``cv2.imwrite`` (0/255, filtered).

``synthetic``: a generated set (default 20 videos x 3 objects x 30 annotated frames at 848x480): smooth random
blobs of mixed sizes drifting over the frames, some absent at the start; predictions are the ground truth
shifted by a few pixels, grown or shrunk, sometimes with a stray blob or missing; all written as savflow writes
masks (``encode_object_png``: palette, unfiltered).

For each set it prints: the reference's time; ``savflow evaluate --num-workers 1 --quiet`` run as a whole command
in a fresh process (wall clock: interpreter start, imports, listing, scoring and writing the results included);
the same evaluation in this process; the PNG-decode floor: reading and decoding every PNG the evaluation reads
once and nothing else, with each of savflow's decoder, PIL (as the official tool reads masks) and
``cv2.imdecode``; and the ratios. The floor the target is checked against is the fastest of the three. (The
floor decodes every file; savflow decodes a file that repeats an empty mask PNG of the same video only once, and
how many such copies each set holds is printed.) Command, in-process run and floors are timed ``--repeat`` times
and the best is kept (the reference once: it is slow). Per-object J and F of both our runs (the command's
results.csv at full precision) are compared with the reference's.

The command runs with OpenCV on one thread (as the reference here) and with Python's bytecode cache on (as an
installed package after its first run; one untimed run fills it). For comparison the decode floor is also timed
as a whole command of its own (a fresh interpreter importing savflow's decoder and decoding every PNG), and, as
bounds on what scoring may cost within the floor target, the same evaluation in this process with J&F skipped.

Targets, each set: the whole command >= 10x faster than the reference, <= 1.5x the decode floor, per-object J and
F equal to the reference's to 1e-6 (in-process: < 1e-9). Exits 1 if a number differs, 2 if only a speed target is
missed.

    .venv/bin/python benchmarks/bench_evaluate.py [--case real|synthetic|both] [--repeat 3]
        [--videos 20 --objects 3 --frames 30 --height 480 --width 848]   (the synthetic set's size)
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable
from unittest import mock

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import reference_jf  # noqa: E402  (the tests' reference, importable once tests/ is on the path)

from savflow.common.savformat import DAVIS_PALETTE, decode_rle, encode_object_png, parse_manual_json  # noqa: E402
from savflow.evaluate import jf  # noqa: E402
from savflow.evaluate.evaluator import evaluate  # noqa: E402
from savflow.evaluate.png import INFLATER, decode_mask_png  # noqa: E402

SAMPLE = REPO / "tests" / "data" / "sav_sample"
SPEEDUP_TARGET = 10.0
FLOOR_TARGET = 1.5
TOL_COMMAND = 1e-6
TOL_IN_PROCESS = 1e-9


# ---------------------------------------------------------------------------------------------------- synthetic set


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


def _write_all(files: list[tuple[Path, Callable[[Path], None]]]) -> None:
    def write(item: tuple[Path, Callable[[Path], None]]) -> None:
        item[0].parent.mkdir(parents=True, exist_ok=True)
        item[1](item[0])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, files))


def generate(root: Path, videos: int, objects: int, frames: int, height: int, width: int, seed: int) -> list[str]:
    """Write ``root/gt`` and ``root/pred`` in the SA-V per-object layout; returns the video ids."""
    rng = np.random.default_rng(seed)
    files: list[tuple[Path, Callable[[Path], None]]] = []
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
                files.append((root / "gt" / rel, _writer("savflow", gt)))
                files.append((root / "pred" / rel, _writer("savflow", perturb(rng, gt))))
    _write_all(files)
    return ids


# --------------------------------------------------------------------------------------------------------- real set

WRITERS = ("opencv", "pil-L", "pil-P", "pil-1")


def _writer(kind: str, mask: np.ndarray) -> Callable[[Path], None]:
    """A function writing ``mask`` to a path the way ``kind`` writes masks."""
    def write(path: Path) -> None:
        if kind == "savflow":
            path.write_bytes(encode_object_png(mask))
        elif kind == "opencv":
            if not cv2.imwrite(str(path), mask.astype(np.uint8) * 255):
                raise OSError(f"cv2.imwrite failed: {path}")
        elif kind == "pil-L":
            Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        elif kind == "pil-P":
            img = Image.fromarray(mask.astype(np.uint8), mode="P")
            img.putpalette(DAVIS_PALETTE)
            img.save(path)
        elif kind == "pil-1":
            Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(path)
        else:
            raise ValueError(kind)
    return write


def _ellipse(k: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx), what leaves the frame is lost (not wrapped around)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out


def real_prediction(rng: np.random.Generator, masks: list[np.ndarray], t: int) -> np.ndarray:
    """A prediction for frame ``t`` of one object whose ground truth per annotated frame is ``masks``."""
    gt = masks[t]
    shape = gt.shape
    u = rng.random()
    if not gt.any():  # the object is absent: mostly nothing predicted, sometimes a false positive
        if u < 0.8:
            return np.zeros_like(gt)
        size = int(rng.integers(10, 300))
        return paste(shape, blob(rng, size), int(rng.integers(-size // 2, shape[0])),
                     int(rng.integers(-size // 2, shape[1])))
    u8 = gt.view(np.uint8)
    if u < 0.06:
        return gt.copy()
    if u < 0.22:
        return cv2.dilate(u8, _ellipse(int(rng.integers(1, 25)))).view(bool)
    if u < 0.38:
        return cv2.erode(u8, _ellipse(int(rng.integers(1, 25)))).view(bool)
    if u < 0.56:
        dy, dx = (int(v) for v in rng.integers(-60, 61, size=2))
        return _shift(gt, dy, dx)
    if u < 0.68:
        dy, dx = (int(v) for v in rng.integers(-8, 9, size=2))
        op = cv2.dilate if rng.random() < 0.5 else cv2.erode
        return _shift(op(u8, _ellipse(int(rng.integers(1, 6)))).view(bool), dy, dx)
    if u < 0.78:  # a dropped frame: an earlier annotated frame's mask held
        return masks[max(t - int(rng.integers(1, 7)), 0)].copy()
    if u < 0.92:  # added blobs, some of them large (the union of both masks then spans much of the frame)
        pred = gt.copy()
        for _ in range(int(rng.integers(1, 4))):
            size = int(rng.choice([rng.integers(8, 60), rng.integers(60, 200), rng.integers(200, 460)]))
            pred |= paste(shape, blob(rng, size), int(rng.integers(-size // 2, shape[0])),
                          int(rng.integers(-size // 2, shape[1])))
        return pred
    return np.zeros_like(gt)  # the object is lost


def real_masks(name: str) -> tuple[str, list[int], list[int], list[list[np.ndarray]]]:
    """(video id, object ids, annotated frames, per object its ground-truth mask on every annotated frame)."""
    ann = parse_manual_json((SAMPLE / name).read_bytes(), file=str(SAMPLE / name))
    empty = np.zeros((ann.height, ann.width), dtype=bool)
    per_obj = [[empty if frame[j] is None else decode_rle(frame[j]) for frame in ann.masklet]
               for j in range(len(ann.masklet_ids))]
    return ann.video_id, list(ann.masklet_ids), list(ann.annotated_frames), per_obj


def generate_real(root: Path, seed: int) -> list[str]:
    """Write ``root/gt`` and ``root/pred`` for the two real annotations; returns the video ids."""
    rng = np.random.default_rng(seed)
    files: list[tuple[Path, Callable[[Path], None]]] = []
    ids = []
    for name, suffix in (("sav_000001_manual.json", ""), ("sav_000001_auto.json", "_auto")):
        video, obj_ids, frames, per_obj = real_masks(name)
        video += suffix
        ids.append(video)
        for j, (obj, masks) in enumerate(zip(obj_ids, per_obj)):
            gt_kind, pred_kind = WRITERS[(j + len(ids)) % len(WRITERS)], WRITERS[(j + len(ids) + 1) % len(WRITERS)]
            for t, frame in enumerate(frames):
                rel = f"{video}/{obj:03d}/{frame:05d}.png"
                files.append((root / "gt" / rel, _writer(gt_kind, masks[t])))
                files.append((root / "pred" / rel, _writer(pred_kind, real_prediction(rng, masks, t))))
    _write_all(files)
    return ids


# -------------------------------------------------------------------------------------------------------- measuring


def evaluated_files(root: Path, ids: list[str]) -> list[Path]:
    """Every PNG the evaluation reads: both roots, each object's frames but the first and last."""
    out = []
    for video in ids:
        for obj in sorted(os.listdir(root / "gt" / video)):
            frames = sorted(os.listdir(root / "gt" / video / obj))[1:-1]
            out += [root / side / video / obj / f for side in ("gt", "pred") for f in frames]
    return out


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:  # the quickest way to read a small file here (pathlib takes twice as long)
        return fh.read()


def _decoders() -> dict[str, Callable[[bytes], np.ndarray]]:
    return {
        "savflow decode_mask_png": decode_mask_png,
        "PIL np.asarray(Image.open)": lambda data: np.asarray(Image.open(io.BytesIO(data))),
        "cv2.imdecode UNCHANGED": lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED),
    }


def recurring_empty(files: list[Path]) -> int:
    """How many of ``files`` repeat, byte for byte, an empty mask PNG met before in the same video: savflow
    decodes those once per video (the floor decodes every file)."""
    seen: dict[str, set[bytes]] = {}
    count = 0
    for path in files:
        data = _read(path)
        known = seen.setdefault(path.parents[1].name, set())
        if data in known:
            count += 1
        elif not decode_mask_png(data).any():
            known.add(data)
    return count


def decode_floor(files: list[Path], decode: Callable[[bytes], np.ndarray]) -> float:
    t0 = time.perf_counter()
    for path in files:
        decode(_read(path))
    return time.perf_counter() - t0


def command_env(cache: Path) -> dict[str, str]:
    """The command's environment: OpenCV on one thread, as the reference runs here (by default it may use a
    second core for part of the dilations); Python's bytecode cache on (under ``cache``), as for an installed
    package after its first run (this sandbox sets PYTHONDONTWRITEBYTECODE, which would compile every savflow
    module at every start, about 40 ms)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env["OPENCV_FOR_THREADS_NUM"] = "1"
    return env


def run_command(gt: str, pred: str, out: str, env: dict[str, str]
                ) -> tuple[float, float, dict[tuple[str, str], tuple[float, float]]]:
    """(wall s, CPU s, per-object (J, F)) of ``savflow evaluate`` as a whole command, one worker."""
    exe = Path(sys.executable).with_name("savflow")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "savflow.cli"]
    cmd += ["evaluate", "--gt-root", gt, "--pred-root", pred, "--output", out, "--num-workers", "1", "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    with open(os.path.join(out, "results.csv"), newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["obj"]]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, {(r["sequence"], r["obj"]): (float(r["J"]), float(r["F"])) for r in rows}


_FLOOR_SCRIPT = """
import sys
from savflow.evaluate.png import decode_mask_png
for path in open(sys.argv[1]).read().splitlines():
    with open(path, "rb") as fh:
        decode_mask_png(fh.read())
"""


def floor_command(files: list[Path], listing: Path, env: dict[str, str]) -> float:
    """Wall seconds of a fresh Python process that imports savflow's decoder and decodes every PNG once: the
    decode floor with an interpreter start of its own, to set beside the whole command."""
    listing.write_text("\n".join(str(p) for p in files))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _FLOOR_SCRIPT, str(listing)], check=True, env=env)
    return time.perf_counter() - t0


def unscored(gt: str, pred: str, ids: list[str]) -> float:
    """Wall seconds of the same evaluation in this process with J&F skipped (every frame scored 1, 1): what
    reading, checking and boxing the masks cost before any scoring, a lower bound of any evaluator built this way."""
    with mock.patch.object(jf, "mask_jf", lambda pred_mask, gt_mask: (1.0, 1.0)):
        t0 = time.perf_counter()
        evaluate(gt, pred, ids, num_workers=1)
        return time.perf_counter() - t0


def max_difference(got: dict, want: dict) -> float:
    if got.keys() != want.keys():
        print(f"FAIL: objects differ: {sorted(got.keys() ^ want.keys())[:5]}")
        return float("inf")
    return max(abs(got[k][i] - want[k][i]) for k in got for i in (0, 1))


def _budget(seconds: float, frames: int) -> str:
    """What is left for scoring within the floor target, per object-frame, in words."""
    return f"{seconds * 1e6 / frames:.0f} us" if seconds > 0 else "nothing (over the target without it)"


def _spread(values: list[float]) -> str:
    q = np.quantile(values, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1])
    return " ".join(f"{v:.2f}" for v in q)


def measure(label: str, root: Path, ids: list[str], repeat: int) -> int:
    """Time reference, command, in-process run and decode floors on one set; 0 ok, 1 numbers differ, 2 slow."""
    gt, pred = str(root / "gt"), str(root / "pred")
    files = evaluated_files(root, ids)
    cv2.setNumThreads(1)  # one worker each: no OpenCV thread pool behind the reference or the in-process run

    t0, c0 = time.perf_counter(), time.process_time()
    ref = reference_jf.evaluate(gt, pred, ids)
    t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
    ref_pairs = {(v, o): (j, f) for v, objs in ref.items() for o, (j, f) in objs.items()}

    env = command_env(root / "pycache")
    run_command(gt, pred, str(root / "out-warm"), env)  # fills the bytecode cache; not timed
    cmd_runs, ours_runs, floor_cmds, unscored_runs = [], [], [], []
    floors: dict[str, list[float]] = {name: [] for name in _decoders()}
    for i in range(repeat):  # interleaved, so that a burst of load elsewhere hits all of them alike
        cmd_runs.append(run_command(gt, pred, str(root / f"out{i}"), env))
        floor_cmds.append(floor_command(files, root / "files.txt", env))
        t0, c0 = time.perf_counter(), time.process_time()
        ours = evaluate(gt, pred, ids, num_workers=1)
        ours_runs.append((time.perf_counter() - t0, time.process_time() - c0))
        unscored_runs.append(unscored(gt, pred, ids))
        for name, decode in _decoders().items():
            floors[name].append(decode_floor(files, decode))
    t_cmd, c_cmd, cmd_pairs = min(cmd_runs)
    t_ours, c_ours = min(ours_runs)
    best = {name: min(times) for name, times in floors.items()}
    floor_name = min(best, key=best.get)
    t_floor = best[floor_name]

    ours_pairs = {(o.video, o.obj): (o.j, o.f) for o in ours.objects}
    diff_ours = max_difference(ours_pairs, ref_pairs)
    diff_cmd = max_difference(cmd_pairs, ref_pairs)
    n = ours.num_frames
    ms = 1000 / n
    frame_j = [v for o in ours.objects for v in o.frame_j]
    frame_f = [v for o in ours.objects for v in o.frame_f]
    print(f"[{label}] {len(ids)} videos, {len(ours.objects)} objects, {n} object-frames scored, {len(files)} PNGs "
          f"decoded ({recurring_empty(files)} of them copies of an empty PNG before them in their video); inflater "
          f"{INFLATER}; machine load {os.getloadavg()[0]:.2f}")
    print(f"[{label}] per-frame J  min/10/25/50/75/90/max %: {_spread(frame_j)}")
    print(f"[{label}] per-frame F  min/10/25/50/75/90/max %: {_spread(frame_f)}")
    print(f"[{label}] reference (tests/reference_jf.py):      {t_ref:7.2f} s wall {c_ref:7.2f} s CPU "
          f"({t_ref * ms:.2f} ms per object-frame)")
    print(f"[{label}] savflow evaluate, whole command:      {t_cmd:7.2f} s wall {c_cmd:7.2f} s CPU "
          f"({t_cmd * ms:.3f} ms per object-frame)")
    print(f"[{label}] savflow evaluate(), in this process:  {t_ours:7.2f} s wall {c_ours:7.2f} s CPU "
          f"({t_ours * ms:.3f} ms per object-frame)")
    for name, t in best.items():
        mark = "  <- floor" if name == floor_name else ""
        print(f"[{label}] decode floor, {name + ':':27s} {t:7.2f} s ({t * 1000 / len(files):.3f} ms per PNG){mark}")
    t_floor_cmd = min(floor_cmds)
    print(f"[{label}] decode floor as a whole command (python -c: import savflow's decoder, decode all): "
          f"{t_floor_cmd:.2f} s; the command is {t_cmd / t_floor_cmd:.2f}x that")
    t_unscored = min(unscored_runs)
    print(f"[{label}] bounds: the decode floor as a whole command is {t_floor_cmd / t_floor:.2f}x the floor; this "
          f"evaluation in this process with J&F skipped is {t_unscored:.2f} s, {t_unscored / t_floor:.2f}x the floor, "
          f"leaving J&F {_budget(FLOOR_TARGET * t_floor - t_unscored, n)} per object-frame in-process and "
          f"{_budget(FLOOR_TARGET * t_floor - t_unscored - (t_cmd - t_ours), n)} as a whole command")
    speedup, over_floor = t_ref / t_cmd, t_cmd / t_floor
    print(f"[{label}] command vs reference: {speedup:.1f}x faster (target >= {SPEEDUP_TARGET:g}x); in-process "
          f"{t_ref / t_ours:.1f}x")
    print(f"[{label}] command vs decode floor: {over_floor:.2f}x (target <= {FLOOR_TARGET:g}x); in-process "
          f"{t_ours / t_floor:.2f}x")
    print(f"[{label}] max abs difference of per-object J, F (x100) from the reference: command {diff_cmd:.3g} "
          f"(< {TOL_COMMAND:g}), in-process {diff_ours:.3g} (< {TOL_IN_PROCESS:g})")
    if not (diff_cmd < TOL_COMMAND and diff_ours < TOL_IN_PROCESS):
        print(f"[{label}] FAIL: numbers differ from the reference")
        return 1
    fast = speedup >= SPEEDUP_TARGET and over_floor <= FLOOR_TARGET
    print(f"[{label}] targets: " + ("met" if fast else "MISSED"))
    return 0 if fast else 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("real", "synthetic", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="timings of command, in-process run and floors")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30, help="annotated frames per object")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=848)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="write the sets under DIR and keep them")
    args = parser.parse_args(argv)

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    statuses = [0]
    try:
        for case in ("real", "synthetic") if args.case == "both" else (args.case,):
            root = base / case
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            if case == "real":
                ids = generate_real(root, args.seed)
                what = "sav_000001 manual (5 objects) + auto (9 masklets), 121 frames each, 480x848"
            else:
                ids = generate(root, args.videos, args.objects, args.frames, args.height, args.width, args.seed)
                what = (f"{args.videos} videos x {args.objects} objects x {args.frames} frames at "
                        f"{args.width}x{args.height}")
            print(f"[{case}] generated {what} in {time.perf_counter() - t0:.1f}s")
            statuses.append(measure(case, root, ids, args.repeat))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 1 if 1 in statuses else max(statuses)


if __name__ == "__main__":
    sys.exit(main())
