"""Semi-supervised video object segmentation of one video with the SAM 2 video predictor API.

Follows sam2's ``tools/vos_inference.py`` (the script behind the published SA-V numbers; the sam2 sdist does not
ship it and it hard-codes CUDA autocast) with ``--per_obj_png_file``:

* default: every object is prompted with its mask on the video's first annotated frame (an object without a
  mask file there is an error, as in the script), or with ``use_all_masks`` on every annotated frame where it
  has a mask file; all objects share one inference state, so each frame's image features are computed once;
* ``track_later``: the script's ``--track_object_appearing_later_in_video``: each object is prompted on the first
  annotated frame where its mask is non-empty (with ``use_all_masks``: on every such frame) and tracked forward
  from there; it is empty before, and an object that never appears is empty throughout. The script runs one
  state per object; sam2 1.1.0 tracks the objects of a state independently, so objects that start on the same
  frame share a state here and give the same masks with fewer image-encoder passes;
* masks are the mask logits thresholded at ``score_thresh`` (the script's ``--score_thresh``, default 0);
  objects may overlap.

On the same weights, inputs and floating-point environment the default mode writes masks bit-identical to the
script's (``tests/integration/test_infer_official.py`` holds a known answer from it). Objects are prompted in
sorted order, the script's in ``os.listdir`` order: sam2 1.1.0 runs each object on its own (batch of one), so
the order does not change a pixel. The masks do depend, near the threshold, on the intra-op thread count and the
CPU kernels (mask logits move by about 1e-7), which neither savflow nor the script sets.

The caller gets one mask per object and annotated frame (the frames that have a mask file for any object),
through a ``sink`` callback called while the frames stream out of the predictor, so a long video never holds all
of its masks in memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from savflow.common import savformat
from savflow.common.savformat import SavFormatError
from savflow.infer.defaults import SCORE_THRESHOLD

_JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")

Sink = Callable[[int, int, np.ndarray], None]
"""Receives ``(obj_id, frame, mask)``: one call per object and annotated frame."""


class PromptError(ValueError):
    """The masks of a video cannot prompt the model in the chosen mode."""


@dataclass(frozen=True)
class MaskIndex:
    """The ground-truth mask files of one video on local disk: ``{obj_id: {frame: path}}``; errors name a file
    as ``{origin}/{obj:03d}/{frame:05d}.png`` when the index knows where the local copy came from."""

    video: str
    files: dict[int, dict[int, Path]]
    origin: str | None = None

    @classmethod
    def scan(cls, video: str, root: Path, *, origin: str | None = None) -> "MaskIndex":
        """Index ``root/{obj:03d}/{frame:05d}.png``; anything else in there is an error naming the file.
        ``origin``: the URI ``root`` was copied from (the masks root's video folder), for error messages."""
        files: dict[int, dict[int, Path]] = {}
        if root.is_dir():
            for obj_dir in sorted(root.iterdir()):
                obj = _number(obj_dir.name, obj_dir, video, "object folder")
                if not obj_dir.is_dir():
                    raise SavFormatError("expected a per-object folder", file=str(obj_dir), video=video,
                                         field="object folder")
                files[obj] = {_number(p.stem, p, video, "mask file"): p for p in sorted(obj_dir.glob("*.png"))}
        if not any(files.values()):
            raise SavFormatError("no per-object mask PNGs ({obj:03d}/{frame:05d}.png)", file=str(root),
                                 video=video, field="masks")
        return cls(video, files, origin.rstrip("/") if origin else None)

    @property
    def objects(self) -> list[int]:
        return sorted(self.files)

    @property
    def annotated_frames(self) -> list[int]:
        return sorted({f for frames in self.files.values() for f in frames})

    def where(self, obj: int, frame: int) -> str:
        """The name of a mask file in error messages: its source URI when known, else the local path."""
        path = self.files[obj][frame]
        return f"{self.origin}/{path.parent.name}/{path.name}" if self.origin else str(path)

    def load(self, obj: int, frame: int) -> np.ndarray:
        """One object's mask on one frame: any non-zero value is the object (as sam2's ``vos_inference.py``);
        a PNG that is not a mask PNG, or holds more than two values, is a :class:`SavFormatError`."""
        where = self.where(obj, frame)
        try:
            data = self.files[obj][frame].read_bytes()
        except OSError as exc:
            raise SavFormatError(f"cannot read: {exc.strerror or exc}", file=where, video=self.video,
                                 field="mask file") from exc
        values = savformat.decode_png(data, file=where, video=self.video)
        if np.count_nonzero((values != values.min()) & (values != values.max())):  # as the evaluator's check
            shown = np.unique(values).tolist()
            raise SavFormatError(f"values {shown[:8]}{' ...' if len(shown) > 8 else ''}: a per-object PNG holds "
                                 "one object (at most two values)", file=where, video=self.video, field="values")
        return values > 0


def _number(text: str, path: Path, video: str, field: str) -> int:
    if not text.isdigit():
        raise SavFormatError(f"name {path.name!r} is not a number", file=str(path), video=video, field=field)
    return int(text)


@dataclass(frozen=True)
class PromptGroup:
    """Objects tracked together in one inference state, from ``start`` forward."""

    start: int
    prompts: dict[int, list[int]]  # obj_id -> frames it is prompted on (24 fps frame numbers)


def plan_prompts(available: dict[int, list[int]], is_empty: Callable[[int, int], bool], *,
                 use_all_masks: bool = False, track_later: bool = False) -> list[PromptGroup]:
    """Which object gets its mask on which frames, grouped by the frame propagation starts on.

    ``available`` maps each object to the frames that have a mask file for it; ``is_empty(obj, frame)`` is only
    asked in ``track_later`` mode. Objects left out of every group (``track_later``, never visible) are
    predicted empty by the caller.
    """
    if not any(available.values()):
        raise PromptError("no annotated frames")
    if not track_later:
        first = min(f for frames in available.values() for f in frames)
        absent = [obj for obj, frames in sorted(available.items()) if first not in frames]
        if absent:
            raise PromptError(
                f"objects {', '.join(f'{o:03d}' for o in absent)} have no mask on the first annotated frame "
                f"{first:05d}; for objects that appear later use track-later-objects mode")
        prompts = {obj: sorted(frames) if use_all_masks else [first] for obj, frames in sorted(available.items())}
        return [PromptGroup(first, prompts)]
    by_start: dict[int, dict[int, list[int]]] = defaultdict(dict)
    for obj, frames in sorted(available.items()):
        visible = _visible_frames(obj, sorted(frames), is_empty, all_frames=use_all_masks)
        if visible:
            by_start[visible[0]][obj] = visible
    return [PromptGroup(start, by_start[start]) for start in sorted(by_start)]


def _visible_frames(obj: int, frames: list[int], is_empty: Callable[[int, int], bool], *,
                    all_frames: bool) -> list[int]:
    out = []
    for frame in frames:
        if not is_empty(obj, frame):
            out.append(frame)
            if not all_frames:
                break
    return out


def frame_numbers(frames_dir: Path) -> list[int]:
    """24 fps frame numbers of the JPEGs in a video folder, in the order sam2's frame loader indexes them."""
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir}: no frames folder")
    names = [os.path.splitext(p)[0] for p in os.listdir(frames_dir) if p.endswith(_JPEG_SUFFIXES)]
    bad = [n for n in names if not n.isdigit()]
    if bad:
        raise SavFormatError(f"frame name {bad[0]!r} is not a number", file=str(frames_dir / bad[0]),
                             field="frame file")
    if not names:
        raise FileNotFoundError(f"{frames_dir}: no JPEG frames")
    return sorted(int(n) for n in names)


@contextlib.contextmanager
def inference_context(device: "torch.device") -> Iterator[None]:  # noqa: F821
    """``torch.inference_mode`` everywhere; bf16 autocast on CUDA (as sam2 evaluates), float32 on CPU."""
    import torch

    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


@dataclass(frozen=True)
class SegmentStats:
    objects: int
    frames: int  # JPEG frames in the video
    frames_tracked: int  # frames propagated over all groups (a frame counts once per group)
    groups: int
    seconds: float


def segment_video(model, device: "torch.device", frames_dir: Path, masks: MaskIndex, sink: Sink, *,  # noqa: F821
                  use_all_masks: bool = False, track_later: bool = False,
                  score_thresh: float = SCORE_THRESHOLD) -> SegmentStats:
    """Segment every object of one video; ``sink`` gets each object's mask on each annotated frame once (the
    pixels whose mask logit is above ``score_thresh``)."""
    t0 = time.perf_counter()
    numbers = frame_numbers(frames_dir)
    index_of = {n: i for i, n in enumerate(numbers)}
    annotated = masks.annotated_frames
    missing = [f for f in annotated if f not in index_of]
    if missing:
        raise SavFormatError(f"annotated frames without a JPEG: {', '.join(f'{f:05d}' for f in missing[:5])}",
                             file=str(frames_dir), video=masks.video, field="frames")
    available = {obj: sorted(frames) for obj, frames in masks.files.items()}
    groups = plan_prompts(available, lambda o, f: not masks.load(o, f).any(),
                          use_all_masks=use_all_masks, track_later=track_later)
    wanted = set(annotated)
    pending = {obj: set(annotated) for obj in masks.objects}
    tracked = 0
    with inference_context(device):
        state = model.init_state(video_path=str(frames_dir))
        shape = (state["video_height"], state["video_width"])
        for n, group in enumerate(groups):
            if n:
                model.reset_state(state)
            for frame in sorted({f for frames in group.prompts.values() for f in frames}):
                for obj, frames in group.prompts.items():
                    if frame in frames:
                        model.add_new_mask(inference_state=state, frame_idx=index_of[frame], obj_id=obj,
                                           mask=_checked(masks, obj, frame, shape))
            for idx, obj_ids, logits in model.propagate_in_video(state, start_frame_idx=index_of[group.start]):
                tracked += 1
                frame = numbers[idx]
                if frame not in wanted:
                    continue
                binary = (logits > score_thresh).cpu().numpy()
                for i, obj in enumerate(obj_ids):
                    sink(obj, frame, binary[i, 0])
                    pending[obj].discard(frame)
    empty = np.zeros(shape, dtype=bool)
    for obj in masks.objects:
        for frame in sorted(pending[obj]):
            sink(obj, frame, empty)
    return SegmentStats(objects=len(masks.objects), frames=len(numbers), frames_tracked=tracked,
                        groups=len(groups), seconds=time.perf_counter() - t0)


def _checked(masks: MaskIndex, obj: int, frame: int, shape: tuple[int, int]) -> np.ndarray:
    mask = masks.load(obj, frame)
    if mask.shape != shape:
        raise SavFormatError(f"mask is {mask.shape[0]}x{mask.shape[1]}, the frames are {shape[0]}x{shape[1]}",
                             file=masks.where(obj, frame), video=masks.video, field="mask size")
    return mask
