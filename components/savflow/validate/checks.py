"""The checks: a video's facts (:mod:`.scan`) and a config's needs (:mod:`.needs`) -> findings, no I/O.

Each finding names its check (:data:`CHECKS`), the video, the field (a JSON field, ``frames``, a config key) and
the file. Errors are what makes sam2 crash or train nothing on the video; warnings are what it trains on, but
not as a user would expect. The frames sam2 can sample from are computed as its ``JSONRawDataset`` does: frame
ids from the file names (every ``sample_rate``-th), kept where the masklet entry ``id / ann_every`` exists and
holds no ``null`` object.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

from savflow.common import savformat
from savflow.validate.manual import parse_annotation
from savflow.validate.needs import TrainNeeds
from savflow.validate.scan import VideoFacts

CONFIG = "(config)"
MIN_NUM_FRAMES = 3
CHECKS = {
    "num-frames": "the config's clip length: below 3 frames sam2 trains nothing",
    "annotation": "the video's *_manual.json exists and is a valid SA-V annotation",
    "frames-missing": "the video has frames (a frame folder, or a readable mp4)",
    "jpeg": "frames are JPEG files (sam2 opens {frame:05d}.jpg)",
    "frame-names": "frame files are named {frame:05d}.jpg",
    "mask-size": "masks have the frames' size",
    "frame-count": "the mp4 has the frame count the annotation says (stage refuses it otherwise)",
    "ann-every": "the config reads the masklet at the stride it was written with",
    "annotated-frames": "at least num_frames annotated frames that sam2 can sample",
    "first-frame": "objects are present in the first annotated frame",
    "empty-masklet": "every object is visible on some annotated frame",
    "null-entries": "no null object on an annotated frame (sam2 drops the whole frame)",
}
_FRAME_NAME = re.compile(r"(\d{5,})\.jpg")


@dataclass(frozen=True)
class Finding:
    video: str
    check: str
    field: str
    message: str
    file: str = "?"
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.video}: {self.check}: field {self.field}: {self.message} ({self.file})"


def check_config(needs: TrainNeeds) -> list[Finding]:
    """What the config asks that no data can give."""
    if needs.num_frames < MIN_NUM_FRAMES:
        return [Finding(CONFIG, "num-frames", needs.num_frames_key,
                        f"{needs.num_frames} frames per clip: with sam2's up to 2 conditioning frames nothing is left "
                        f"to track, the loss has no gradient and training stops with 'element 0 of tensors does not "
                        f"require grad'; use {MIN_NUM_FRAMES} or more", needs.config)]
    return []


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f", ... ({len(names)} files)" if len(names) > 3 else "")


def _frame_ids(facts: VideoFacts, out: list[Finding], frame_count: int | None) -> list[int] | None:
    """The frame ids sam2 would see, after reporting what is wrong with the frame files."""
    def add(check: str, message: str, severity: Literal["error", "warning"] = "error") -> None:
        out.append(Finding(facts.video, check, "frames", message, facts.frames_uri, severity))

    if facts.frame_error:
        add("frames-missing", facts.frame_error)
        return None
    if facts.kind == "mp4":
        count = facts.frame_count if facts.frame_count is not None else frame_count
        return list(range(0, count or 0, facts.stage_sample_rate))
    names = facts.frame_names or []
    if not names:
        add("frames-missing", "no frames in the video's folder")
        return None
    other = [n for n in names if not n.endswith(".jpg")]
    if other:
        add("jpeg", f"{_few(other)}: not .jpg; sam2 opens {{frame:05d}}.jpg only (PNG frames are not read)")
    badly_named = [n for n in names if n.endswith(".jpg") and not (
        (m := _FRAME_NAME.fullmatch(n)) and f"{int(m.group(1)):05d}.jpg" == n)]
    if badly_named:
        add("frame-names", f"{_few(badly_named)}: not named {{frame:05d}}.jpg (00000.jpg, 00001.jpg, ...), which "
                           f"is the path sam2 builds from a frame's number")
    for name, fmt in facts.frame_formats.items():
        if fmt != "JPEG":
            add("jpeg", f"{name} holds a {fmt} image, not JPEG", "warning")
    return sorted(int(n[:-4]) for n in names if _FRAME_NAME.fullmatch(n) and n not in badly_named)


def _stride(facts: VideoFacts, doc: dict, needs: TrainNeeds, out: list[Finding]) -> int | None:
    """The stride sam2 will read the masklet at (the config's, or ``frames_fps // fps`` for a JSON with an ``fps``
    key), or None after reporting that it is not the one the data was written with."""
    stride, where = needs.ann_every, f"{needs.dataset_path}.ann_every"
    if "fps" in doc:
        raw = doc["fps"][0] if isinstance(doc["fps"], list) and doc["fps"] else doc["fps"]
        fps = int(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else 0
        if fps <= 0 or needs.frames_fps % fps:
            out.append(Finding(facts.video, "ann-every", "fps", f"annotation fps {raw!r} does not divide the config's "
                               f"frames_fps {needs.frames_fps}: sam2 fails an assertion", facts.annotation_uri))
            return None
        stride, where = needs.frames_fps // fps, f"{needs.dataset_path}.frames_fps"
    written = savformat.recorded_stride(doc)
    if written is not None and written != stride:
        fix = (f"--override ++{needs.dataset_path}.ann_every={written}" if "fps" not in doc
               else f"an fps key of {needs.frames_fps // written}")
        out.append(Finding(facts.video, "ann-every", "ann_every",
                           f"annotated every {written} frame(s) (recorded by savflow import), but the config reads "
                           f"masklet entry i as frame i * {stride} ({where}); use {fix}", facts.annotation_uri))
        return None
    return stride


def _parse(facts: VideoFacts, doc: dict, stride: int, out: list[Finding]) -> savformat.ManualAnnotation | None:
    try:
        ann = parse_annotation(doc, file=facts.annotation_uri, ann_every=stride)
    except savformat.SavFormatError as exc:
        message = str(exc).rsplit(f": field {exc.field}: ", 1)[-1]
        if exc.field.endswith(".size"):
            check = "mask-size"
        elif exc.field == "masklet" and "at most" in message:
            check, message = "ann-every", f"{message}: annotated more often than every {stride} frame(s)?"
        else:
            check = "annotation"
        out.append(Finding(facts.video, check, exc.field, message, exc.file))
        return None
    if ann.video_id != facts.video:
        out.append(Finding(facts.video, "annotation", "video_id", f"{ann.video_id!r} is not the file's video",
                           facts.annotation_uri))
        return None
    return ann


def _area(rle: dict) -> int:
    """Pixels of a COCO RLE without decoding it: the sum of its foreground runs."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))
    from pycocotools import mask as mask_utils

    return int(mask_utils.area({"size": rle["size"], "counts": counts.encode("ascii")}))


def _sizes(facts: VideoFacts, ann: savformat.ManualAnnotation, out: list[Finding]) -> None:
    want = (ann.height, ann.width)
    for name, size in facts.frame_sizes.items():
        if size != want:
            out.append(Finding(facts.video, "mask-size", "video_height/video_width",
                               f"masks are {ann.width}x{ann.height}, but {name} is {size[1]}x{size[0]}",
                               facts.annotation_uri))
            return


def _frames_and_objects(facts: VideoFacts, ann: savformat.ManualAnnotation, stride: int, ids: list[int],
                        needs: TrainNeeds, out: list[Finding]) -> None:
    def add(check: str, where: str, message: str, severity: Literal["error", "warning"] = "error") -> None:
        out.append(Finding(facts.video, check, where, message, facts.annotation_uri, severity))

    complete = {i * stride: i for i, entry in enumerate(ann.masklet) if None not in entry}
    nulls = [i for i, entry in enumerate(ann.masklet) if None in entry and any(e is not None for e in entry)]
    if nulls:
        add("null-entries", f"masklet[{nulls[0]}]", f"{len(nulls)} annotated frames have a null object (first: frame "
            f"{nulls[0] * stride}); sam2 drops every such frame from training: write an empty RLE for an absent "
            f"object", "warning")
    present = set(ids)
    missing = sorted(f for f in complete if f not in present)
    if missing:
        add("annotated-frames", "frames", f"{len(missing)} annotated frames have no frame file (first: "
            f"{missing[0]:05d}); they are not trained on", "warning")
    usable = [f for f in ids[::needs.sample_rate] if f in complete]
    if len(usable) < needs.num_frames:
        add("annotated-frames", "masklet", f"{len(usable)} annotated frames sam2 can sample, fewer than the config's "
            f"num_frames {needs.num_frames} ({needs.num_frames_key}): sam2 retries other videos 100 times, then fails "
            f"with UnboundLocalError 'sampled_frms_and_objs'")
    areas = [[_area(rle) if rle is not None else 0 for rle in entry] for entry in ann.masklet]
    for k, obj in enumerate(ann.masklet_ids):
        if not any(row[k] for row in areas):
            add("empty-masklet", f"masklet_id[{k}]", f"object {obj} is empty on every annotated frame")
    if not usable:
        return
    first = complete[usable[0]]
    absent = [obj for k, obj in enumerate(ann.masklet_ids) if not areas[first][k]]
    if absent:
        add("first-frame", f"masklet[{first}]", f"object(s) {', '.join(map(str, absent))} absent from the first "
            f"annotated frame {usable[0]}: sam2 trains an object only on clips whose first frame shows it",
            "warning")
    starts = usable[: len(usable) - needs.num_frames + 1]
    if starts and not any(any(areas[complete[f]]) for f in starts):
        add("first-frame", "masklet", f"no clip of {needs.num_frames} annotated frames starts on a frame that shows "
            f"an object: sam2 fails with 'No visible objects'")


def check_video(facts: VideoFacts, needs: TrainNeeds) -> list[Finding]:
    """Every problem of one video for one config, in one pass."""
    out: list[Finding] = []
    doc = None
    if facts.annotation is None:
        out.append(Finding(facts.video, "annotation", "(file)", "missing", facts.annotation_uri))
    else:
        try:
            doc = json.loads(facts.annotation)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            out.append(Finding(facts.video, "annotation", "(document)", f"malformed JSON: {exc}", facts.annotation_uri))
        if doc is not None and not isinstance(doc, dict):
            out.append(Finding(facts.video, "annotation", "(document)", "top level must be an object",
                               facts.annotation_uri))
            doc = None
    count = doc.get("video_frame_count") if doc else None
    ids = _frame_ids(facts, out, int(count) if isinstance(count, (int, float)) and count == count and
                     math.isfinite(count) else None)
    if doc is None:
        return out
    stride = _stride(facts, doc, needs, out)
    ann = _parse(facts, doc, stride, out) if stride is not None else None
    if ann is None:
        return out
    _sizes(facts, ann, out)
    if facts.kind == "mp4" and facts.frame_count is not None and facts.frame_count != ann.frame_count:
        out.append(Finding(facts.video, "frame-count", "video_frame_count", f"the mp4 has {facts.frame_count} frames, "
                           f"the annotation says {ann.frame_count}: stage refuses the video", facts.annotation_uri))
    if ids is not None:
        _frames_and_objects(facts, ann, stride, ids, needs, out)
    return out
