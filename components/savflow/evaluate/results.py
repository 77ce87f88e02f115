"""Evaluation outputs: ``results.csv`` and ``metrics.json`` (full precision) and the console summary (rounded).

``results.csv`` has the official SA-V benchmark's columns and row order (``sequence,obj,J&F,J,F``; first row
``Global score`` with an empty ``obj``, then one row per object, videos and objects in order), but as plain CSV
without the official file's space padding and with every value at full precision (shortest repr that reads back
to the same float), so that pandas or ``csv`` read it back exactly.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from savflow.common import storage
from savflow.evaluate.evaluator import EvalResult, Scores

RESULTS_CSV = "results.csv"
METRICS_JSON = "metrics.json"
CSV_HEADER = ("sequence", "obj", "J&F", "J", "F")
GLOBAL_ROW = "Global score"


def results_csv(result: EvalResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    total = result.global_scores
    writer.writerow((GLOBAL_ROW, "", total.jf, total.j, total.f))
    for obj in result.objects:
        writer.writerow((obj.video, obj.obj, obj.jf, obj.j, obj.f))
    return buf.getvalue()


def official_results_csv(result: EvalResult) -> str:
    """``results.csv`` as the official SA-V evaluator writes it into its ``--pred_root``
    (sav_dataset/utils/sav_benchmark.py, facebookresearch/sam2@2b90b9f): the same header, padding, one decimal
    and row order (global row, then videos and their objects sorted), so scripts that parse that file keep
    working. Ours under ``--output`` keeps full precision."""
    width = max(len(GLOBAL_ROW), *(len(o.video) for o in result.objects))
    total = result.global_scores
    lines = [f"{'sequence':<{width}},{'obj':>3}, {'J&F':>4}, {'J':>4}, {'F':>4}",
             f"{GLOBAL_ROW:<{width}},{'':>3}, {total.jf:.1f}, {total.j:.1f}, {total.f:.1f}"]
    for o in sorted(result.objects, key=lambda o: (o.video, o.obj)):
        obj = f"{int(o.obj):03}" if o.obj.isdigit() else o.obj
        lines.append(f"{o.video:<{width}},{obj}, {o.jf:>4.1f}, {o.j:>4.1f}, {o.f:>4.1f}")
    return "\n".join(lines) + "\n"


def _scores_dict(scores: Scores) -> dict[str, float | int]:
    return {"J&F": scores.jf, "J": scores.j, "F": scores.f, "objects": scores.objects}


def video_set_digest(videos: list[str]) -> str:
    """A digest of the set of videos evaluated: two evaluations compare only when it is the same."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(set(videos))).encode()).hexdigest()[:16]


def scored_videos(result: EvalResult) -> list[str]:
    """The videos that count in the scores: those asked for, less the skipped (no predictions) and the failed
    (bad input, within ``max_failures``), so that a partial evaluation never compares with a full one."""
    left_out = set(result.skipped_videos) | {f.video for f in result.failures}
    return [v for v in result.videos if v not in left_out]


def protocol(result: EvalResult) -> dict[str, Any]:
    """The options that change the numbers (two evaluations compare only under the same ones): the scoring
    rule, and the benchmark preset and inference options where known."""
    out: dict[str, Any] = {"skip_first_last": result.skip_first_last}
    if result.benchmark:
        out["benchmark"] = result.benchmark
    if result.inference is not None:
        out["inference"] = result.inference
    return out


def metrics_dict(result: EvalResult) -> dict[str, Any]:
    """Global, per-video, per-object (and, when buckets were given, per-bucket) scores with counts and timing."""
    total = result.global_scores
    out: dict[str, Any] = {
        "J&F": total.jf,
        "J": total.j,
        "F": total.f,
        "num_videos": len(result.per_video()),
        "num_objects": len(result.objects),
        "num_object_frames": result.num_frames,
        "skipped_videos": result.skipped_videos,
        "failed_videos": [{"video": f.video, "stage": f.stage, "reason": f.reason} for f in result.failures],
        "unscored_objects": [{"video": u.video, "obj": u.obj, "reason": u.reason} for u in result.unscored_objects],
        "skip_first_last": result.skip_first_last,
        "benchmark": result.benchmark or None,
        "video_set": video_set_digest(scored_videos(result)),
        "protocol": protocol(result),
        "gt_root": result.gt_root,
        "pred_root": result.pred_root,
        "seconds": result.seconds,
        "per_video": {video: _scores_dict(s) for video, s in result.per_video().items()},
        "per_object": [
            {"video": o.video, "obj": o.obj, "J&F": o.jf, "J": o.j, "F": o.f, "frames": len(o.frames),
             **({"bucket": o.bucket} if o.bucket is not None else {})}
            for o in result.objects
        ],
    }
    buckets = result.per_bucket()
    if buckets:
        out["per_bucket"] = {bucket: _scores_dict(s) for bucket, s in buckets.items()}
    return out


def write_results(result: EvalResult, output: str) -> dict[str, str]:
    """Write ``results.csv`` and ``metrics.json`` under the ``output`` URI; returns their URIs."""
    uris = {"csv": storage.join(output, RESULTS_CSV), "json": storage.join(output, METRICS_JSON)}
    storage.write_text(uris["csv"], results_csv(result))
    storage.write_bytes(uris["json"], json.dumps(metrics_dict(result), indent=2).encode(),
                        content_type="application/json")
    return uris


def summary_text(result: EvalResult, *, table: bool = True) -> str:
    """What the console shows: the per-object table (as the official benchmark prints it) and the global line,
    rounded to one decimal."""
    total = result.global_scores
    lines = []
    if table:
        width = max(len(GLOBAL_ROW), *(len(o.video) for o in result.objects))
        lines.append(f"{'sequence':<{width}} {'obj':>3}  {'J&F':>5} {'J':>5} {'F':>5}")
        lines.append(f"{GLOBAL_ROW:<{width}} {'':>3}  {total.jf:5.1f} {total.j:5.1f} {total.f:5.1f}")
        lines += [f"{o.video:<{width}} {o.obj:>3}  {o.jf:5.1f} {o.j:5.1f} {o.f:5.1f}" for o in result.objects]
        lines.append("")
    for bucket, s in result.per_bucket().items():
        lines.append(f"Size bucket {bucket}: J&F: {s.jf:.1f} J: {s.j:.1f} F: {s.f:.1f} ({s.objects} objects)")
    skipped = f", {len(result.skipped_videos)} skipped (no predictions)" if result.skipped_videos else ""
    unscored = f", {len(result.unscored_objects)} unscored" if result.unscored_objects else ""
    failed = f", {len(result.failures)} failed (bad input, not scored)" if result.failures else ""
    lines.append(f"Evaluated {len(result.per_video())} videos{skipped}{failed}, {len(result.objects)} objects{unscored}, "
                 f"{result.num_frames} object-frames; first/last frames "
                 f"{'skipped' if result.skip_first_last else 'kept'}")
    lines.append(f"Global score: J&F: {total.jf:.1f} J: {total.j:.1f} F: {total.f:.1f}")
    lines.append(f"Time taken: {result.seconds:.2f}s")
    return "\n".join(lines)
