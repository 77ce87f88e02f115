"""What the KFP UI shows of an evaluation: a Markdown table and an HTML page with mask overlays.

Both are built from an :class:`~savflow.evaluate.evaluator.EvalResult` and stay small (the UI renders artifacts
inline, so the HTML embeds a few downscaled JPEG thumbnails, well under a megabyte, and the Markdown table is
capped at :data:`MAX_TABLE_ROWS` object rows, worst first when cut).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np

from savflow.common import savformat, storage
from savflow.evaluate.evaluator import EvalResult, ObjectResult

MAX_TABLE_ROWS = 200
THUMB_WIDTH = 320
GT_COLOUR = (0, 255, 0)
PRED_COLOUR = (255, 0, 255)


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def markdown_report(result: EvalResult, *, title: str = "SA-V evaluation") -> str:
    """Global scores, scores per size bucket (when known) and one row per video and object."""
    total = result.global_scores
    lines = [f"# {title}", "",
             f"**J&F {_fmt(total.jf)}** (J {_fmt(total.j)}, F {_fmt(total.f)}) over {total.objects} objects in "
             f"{len(result.per_video())} videos, {result.num_frames} object-frames"
             f"{'' if result.skip_first_last else ', first and last frames included'}.", ""]
    buckets = result.per_bucket()
    if buckets:
        lines += ["| size bucket | objects | J&F | J | F |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {b} | {s.objects} | {_fmt(s.jf)} | {_fmt(s.j)} | {_fmt(s.f)} |" for b, s in buckets.items()]
        lines.append("")
    objects = result.objects
    note = ""
    if len(objects) > MAX_TABLE_ROWS:
        objects = sorted(objects, key=lambda o: o.jf)[:MAX_TABLE_ROWS]
        note = f"Showing the {MAX_TABLE_ROWS} lowest of {len(result.objects)} objects; results.csv has all."
    lines += ["| video | object | J&F | J | F | frames |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {o.video} | {o.obj} | {_fmt(o.jf)} | {_fmt(o.j)} | {_fmt(o.f)} | {len(o.frames)} |"
              for o in objects]
    if note:
        lines += ["", note]
    if result.skipped_videos:
        lines += ["", f"Videos without predictions (skipped): {', '.join(result.skipped_videos)}"]
    if result.failures:
        lines += ["", "Videos not scored for bad input:", ""]
        lines += [f"- {f.video}: {f.reason}" for f in result.failures]
    if result.unscored_objects:
        lines += ["", "Objects without a score: " + "; ".join(f"{u.video}/{u.obj}: {u.reason}"
                                                            for u in result.unscored_objects)]
    return "\n".join(lines) + "\n"


def overlay(frame: np.ndarray, gt: np.ndarray, pred: np.ndarray, *, width: int = THUMB_WIDTH) -> np.ndarray:
    """The frame with the predicted mask tinted and the ground-truth outline drawn, downscaled to ``width``."""
    import cv2

    out = frame.astype(np.float32)
    out[pred] = 0.55 * out[pred] + 0.45 * np.array(PRED_COLOUR, np.float32)
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, frame.shape[1] // 320)
    cv2.drawContours(out, contours, -1, GT_COLOUR, thickness)
    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    return cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)


def _jpeg_data_uri(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Roots:
    """Where the overlays read from: frames (``{video}/{frame}.jpg``), ground truth and predictions."""

    frames: str
    gt: str
    pred: str


def _picked_frames(obj: ObjectResult, count: int) -> list[str]:
    """The object's worst frame by J plus evenly spread others, in time order."""
    if not obj.frames:
        return []
    worst = obj.frames[int(np.argmin(obj.frame_j))]
    spread = [obj.frames[i] for i in np.linspace(0, len(obj.frames) - 1, count).round().astype(int)]
    return sorted(dict.fromkeys([worst, *spread]))[:count]


def _anchor_ids(keys: list[tuple[str, ...]], prefix: str) -> dict[tuple[str, ...], str]:
    """A distinct ``id`` attribute per key, made of characters a URL fragment keeps as they are."""
    ids: dict[tuple[str, ...], str] = {}
    used: set[str] = set()
    for key in dict.fromkeys(keys):
        base = prefix + "".join(c if c.isalnum() or c in "-_" else "_" for c in "-".join(key))
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        ids[key] = anchor
    return ids


@dataclass(frozen=True)
class _Anchors:
    """The page's ``id`` of each object's overlay and of each video's table row."""

    objects: dict[tuple[str, ...], str]
    videos: dict[tuple[str, ...], str]

    @classmethod
    def of(cls, result: EvalResult) -> "_Anchors":
        return cls(objects=_anchor_ids([(o.video, o.obj) for o in result.objects], "obj-"),
                   videos=_anchor_ids([(o.video,) for o in result.objects], "video-"))


def _object_figure(obj: ObjectResult, roots: Roots, frames_per_object: int, anchors: _Anchors) -> str:
    from PIL import Image

    cells = []
    for frame in _picked_frames(obj, frames_per_object):
        jpg = storage.read_bytes(storage.join(roots.frames, obj.video, f"{frame}.jpg"))
        image = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))
        gt = savformat.decode_object_png(storage.read_bytes(storage.join(roots.gt, obj.video, obj.obj, f"{frame}.png")))
        pred = savformat.decode_object_png(
            storage.read_bytes(storage.join(roots.pred, obj.video, obj.obj, f"{frame}.png")))
        j = obj.frame_j[obj.frames.index(frame)] * 100
        cells.append(f'<figure><img src="{_jpeg_data_uri(overlay(image, gt, pred))}" alt="frame {frame}">'
                     f"<figcaption>frame {html.escape(frame)}: J {j:.1f}</figcaption></figure>")
    video = f'<a href="#{anchors.videos[(obj.video,)]}">{html.escape(obj.video)}</a>'
    return (f'<section class=overlay id="{anchors.objects[(obj.video, obj.obj)]}"><h3>{video} / object '
            f"{html.escape(obj.obj)}: J&amp;F {_fmt(obj.jf)} (J {_fmt(obj.j)}, F {_fmt(obj.f)})</h3>"
            f"<div class=row>{''.join(cells)}</div></section>")


def per_video_table(result: EvalResult, anchors: _Anchors, shown: set[tuple[str, str]]) -> str:
    """One row per video, in video order: its scores and its objects, each linked to its overlay when the page
    has one. Past :data:`MAX_TABLE_ROWS` videos only the lowest are listed, and those with an overlay."""
    by_video: dict[str, list[ObjectResult]] = {}
    for obj in result.objects:
        by_video.setdefault(obj.video, []).append(obj)
    videos = result.per_video()
    names = list(videos)
    note = ""
    if len(names) > MAX_TABLE_ROWS:
        keep = set(sorted(names, key=lambda v: videos[v].jf)[:MAX_TABLE_ROWS]) | {v for v, _ in shown}
        names = [v for v in names if v in keep]
        note = f"<p>Showing {len(names)} of {len(videos)} videos (the lowest); results.csv has all.</p>"
    rows = []
    for video in names:
        cells = []
        for obj in sorted(by_video[video], key=lambda o: o.obj):
            label = f"{html.escape(obj.obj)} ({_fmt(obj.jf)})"
            key = (obj.video, obj.obj)
            cells.append(f'<a href="#{anchors.objects[key]}">{label}</a>' if key in shown else label)
        score = videos[video]
        rows.append(f'<tr id="{anchors.videos[(video,)]}"><td>{html.escape(video)}</td>'
                    f"<td class=num>{_fmt(score.jf)}</td><td class=num>{_fmt(score.j)}</td>"
                    f"<td class=num>{_fmt(score.f)}</td><td>{', '.join(cells)}</td></tr>")
    return ('<table id="per-video"><tr><th>video</th><th>J&amp;F</th><th>J</th><th>F</th>'
            "<th>objects (J&amp;F; linked: overlays below)</th></tr>" + "".join(rows) + "</table>" + note)


def html_report(result: EvalResult, roots: Roots, *, objects_each_end: int = 2, frames_per_object: int = 3,
                title: str = "SA-V evaluation") -> str:
    """A table of the videos and their objects, and overlays for the worst and the best objects (per-object
    layout only): predicted mask in magenta, ground-truth outline in green. Each object with an overlay links
    to it from the table, and each overlay back to its video's row."""
    total = result.global_scores
    ranked = sorted(result.objects, key=lambda o: o.jf)
    worst = ranked[:objects_each_end]
    best = [o for o in ranked[::-1][:objects_each_end] if o not in worst]
    anchors = _Anchors.of(result)
    shown = {(o.video, o.obj) for o in worst + best}

    def figures(objs: list[ObjectResult]) -> str:
        return "".join(_object_figure(o, roots, frames_per_object, anchors) for o in objs)

    sections = ["<h2>Per video</h2>", per_video_table(result, anchors, shown),
                f"<h2>Worst objects</h2>{figures(worst)}"]
    if best:
        sections.append(f"<h2>Best objects</h2>{figures(best)}")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>" + html.escape(title) + "</title><style>"
        "body{font-family:sans-serif;margin:1em}.row{display:flex;gap:8px;flex-wrap:wrap}"
        "figure{margin:0}figcaption{font-size:12px}table{border-collapse:collapse}"
        "th,td{border:1px solid #ddd;padding:2px 6px;font-size:13px;text-align:left}td.num{text-align:right}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p><b>J&amp;F {_fmt(total.jf)}</b> (J {_fmt(total.j)}, F {_fmt(total.f)}) "
        f"over {total.objects} objects. Magenta: prediction; green outline: ground truth.</p>"
        + "".join(sections) + "</body></html>"
    )
