"""The train annotation as sam2's ``JSONRawDataset`` reads it, whatever stride it was written with.

sam2 maps masklet entry i to frame ``i * ann_every``, ``ann_every`` coming from the training config (4 in
savflow's, SA-V's stride) or, for a JSON with an ``fps`` key, from ``frames_fps // fps``. ``savflow import``
records the stride it wrote in each file (``ann_every``, with the frame rate as ``video_fps``: keys sam2 ignores),
so that a check can tell a config that reads the data at the wrong stride.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from savflow.common import savformat

FPS_KEY = "video_fps"
# where savflow's training configs (and sam2's MOSE recipe they follow) declare their JSONRawDataset
VIDEO_DATASET_PATH = "trainer.data.train.datasets.0.dataset.datasets.0.video_dataset"


def train_overrides(ann_every: int, fps: float, path: str = VIDEO_DATASET_PATH) -> list[str]:
    """The Hydra overrides (``savflow train --override ...``) that make the config read the data as written:
    sam2's ``JSONRawDataset`` maps masklet entry i to frame ``i * ann_every`` with the config's value (4 in ours),
    so a dataset annotated on every frame is otherwise read as every 4th. ``frames_fps`` matters to sam2 only for
    a JSON with an ``fps`` key (which we never write); it is set so that the config says what the data is."""
    return [f"++{path}.ann_every={int(ann_every)}", f"++{path}.frames_fps={max(1, round(fps))}"]


def parse_annotation(doc: dict | bytes | str, *, file: str, ann_every: int) -> savformat.ManualAnnotation:
    """:func:`savflow.common.savformat.parse_manual_json` for a masklet written every ``ann_every``-th frame.

    The reader bounds the masklet's length by SA-V's stride (at most ``ceil(frames / 4)`` entries); here the
    bound is ``ceil(frames / ann_every)``, so a dataset annotated more often (DAVIS: every frame) passes and one
    read at too fine a stride does not, and the reader checks everything else (ids, RLE sizes and runs). The
    result's ``frame_count`` is the file's own."""
    if isinstance(doc, (bytes, str)):
        doc = _load(doc, file)
    count, masklet = (doc.get("video_frame_count"), doc.get("masklet")) if isinstance(doc, dict) else (None, None)
    if isinstance(count, bool) or not isinstance(count, (int, float)) or not count > 0 or int(count) != count \
            or not isinstance(masklet, list):
        return savformat.parse_manual_json(doc, file=file)  # it names what is wrong
    most = math.ceil(count / ann_every)
    if len(masklet) > most:
        raise savformat.SavFormatError(
            f"{len(masklet)} annotated frames, but a {int(count)}-frame video annotated every {ann_every} frame(s) "
            f"has at most {most}", file=file, video=str(doc.get("video_id", "?")), field="masklet")
    relaxed = {**doc, "video_frame_count": max(int(count), len(masklet) * savformat.ANN_EVERY)}
    ann = savformat.parse_manual_json(relaxed, file=file)
    return dataclasses.replace(ann, frame_count=int(count), raw=doc, ann_every=ann_every)


def _load(data: bytes | str, file: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise savformat.SavFormatError(f"malformed JSON: {exc}", file=file, field="(document)") from exc


def annotated_frames(ann: savformat.ManualAnnotation, ann_every: int) -> list[int]:
    """The frame index of each masklet entry."""
    return [i * ann_every for i in range(len(ann.masklet))]
