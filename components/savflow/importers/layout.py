"""What ``savflow import`` writes, and how it records the frame rate and the annotation stride.

Under ``--dest``::

    JPEGImages_24fps/{video}/{frame:05d}.jpg          every frame, numbered 0..N-1 in source order
    annotations/{video}_manual.json                   SA-V train annotation: masklet entry i is frame i * ann_every
    Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png  the val layout: every object on every annotated frame
    file_list.txt                                     the imported videos
    mp4/{video}.mp4, mp4/{video}_manual.json          with --mp4 only: the raw SA-V train split ``stage`` reads
    savflow_import.json                               the record: source, format, fps, ann_every, overrides

The folder names are SA-V's whatever the frame rate and stride, because they are what the steps look for; the
rate and the stride are recorded instead, in every ``*_manual.json`` (``video_fps``, ``ann_every``: keys sam2
ignores) and in the record, which also lists the Hydra overrides that tell a training config about them. One
root serves every step: ``savflow train`` reads ``JPEGImages_24fps`` + ``annotations`` as they are, ``infer`` and
``evaluate`` read ``JPEGImages_24fps`` + ``Annotations_6fps``, and ``stage`` copies the val layout byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

from savflow.common import storage
from savflow.common.savformat import STRIDE_KEY, recorded_stride
from savflow.validate.manual import FPS_KEY, VIDEO_DATASET_PATH, annotated_frames, parse_annotation, train_overrides

# the annotation's contract with training: the reader's (savflow.common.savformat) and the checks'
# (savflow.validate.manual), re-exported here
__all__ = ["FILE_LIST", "FPS_KEY", "MP4_DIR", "RECORD", "SOURCE_FRAMES_KEY", "STRIDE_KEY", "VIDEO_DATASET_PATH",
           "annotated_frames", "parse_annotation", "read_record", "recorded_stride", "size_bucket", "train_overrides"]

RECORD = "savflow_import.json"
FILE_LIST = "file_list.txt"
MP4_DIR = "mp4"
SOURCE_FRAMES_KEY = "source_frames"


def size_bucket(area: float) -> str:
    """SA-V's size buckets by an object's mean visible area in pixels (COCO thresholds), which the evaluator
    reports J&F by."""
    return "small" if area < 32 ** 2 else "medium" if area < 96 ** 2 else "large"


def read_record(root: str) -> dict[str, Any] | None:
    """The record of the import at ``root`` (None when ``root`` is no import), e.g. for a caller that passes
    ``record["train"]["overrides"]`` on to training."""
    uri = storage.join(root, RECORD)
    try:
        return json.loads(storage.read_bytes(uri))
    except storage.NotFoundError:
        return None
