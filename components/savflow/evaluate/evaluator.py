"""The SA-V evaluator: ground-truth and predicted masks from any storage URI -> per-object J&F and global scores.

``gt_root`` is the folder that holds the video folders (for SA-V, ``sav_val/Annotations_6fps``), in either
layout, and ``pred_root`` holds the predictions in the same layout (as in the official ``sav_evaluator.py``)::

    {root}/{video}/{obj:03d}/{frame:05d}.png   SA-V: one binary PNG per object and frame (non-zero = object)
    {root}/{video}/{frame:05d}.png             DAVIS: one palette PNG per frame, value v = object v - 1

Frames are the sorted PNG names of each ground-truth folder (per object in the SA-V layout, per video in the DAVIS
one); the first and last are skipped by default. Prediction files for frames the ground truth lacks are ignored.
Objects are named by their folder (``000``) or, in the DAVIS layout, by ``f"{v - 1:03d}"``. Files directly under a
root and a ``_done/`` marker folder are not videos.

The parent lists both roots once (one listing request per root on GCS), checks that every needed prediction
exists, then scores videos in worker processes; each worker fetches its video's PNGs (in parallel threads on
GCS) and decodes every PNG once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import cv2
import numpy as np

from savflow.common import storage
from savflow.common.cpus import available_cpus
from savflow.common.failures import Failure
from savflow.common.markers import MARKER_DIR
from savflow.common.progress import Progress
from savflow.common.savformat import SavFormatError, check_name, parse_manual_json
from savflow.evaluate.jf import Mask, ObjectScores, bbox
from savflow.evaluate.png import decode_mask, decode_mask_png

log = logging.getLogger(__name__)

OBJECTS = "objects"
PALETTE = "palette"
_MAX_LISTED = 20
_FETCH_THREADS = 16


class EvaluationError(RuntimeError):
    """The inputs cannot be evaluated as asked; the message names the videos and files at fault."""


@dataclass(frozen=True)
class ObjectResult:
    """One object's scores (x100) and the per-frame values (fractions) they are the mean of."""

    video: str
    obj: str
    j: float
    f: float
    frames: tuple[str, ...]
    frame_j: tuple[float, ...]
    frame_f: tuple[float, ...]
    bucket: str | None = None

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


@dataclass(frozen=True)
class UnscoredObject:
    """A ground-truth object that gets no score (the official benchmark would stop on it), and why."""

    video: str
    obj: str
    reason: str


@dataclass(frozen=True)
class Scores:
    jf: float
    j: float
    f: float
    objects: int


def _scores(objects: list[ObjectResult]) -> Scores:
    """Mean J and F over objects (as the official ``np.array(all_iou).mean()``), J&F = their mean."""
    j = float(np.array([o.j for o in objects]).mean())
    f = float(np.array([o.f for o in objects]).mean())
    return Scores((j + f) / 2, j, f, len(objects))


@dataclass
class EvalResult:
    """Everything one evaluation found; global scores are means over all objects of all videos, x100."""

    objects: list[ObjectResult]
    gt_root: str
    pred_root: str
    skip_first_last: bool
    seconds: float
    videos: list[str]
    skipped_videos: list[str] = field(default_factory=list)
    unscored_objects: list[UnscoredObject] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # videos not scored for bad input (<= max_failures)
    benchmark: str = ""  # the preset the evaluation followed (savflow.common.benchmarks), if any
    inference: dict | None = None  # the inference options the predictions' markers record, when they agree

    @property
    def global_scores(self) -> Scores:
        return _scores(self.objects)

    @property
    def num_frames(self) -> int:
        """Object-frames scored."""
        return sum(len(o.frames) for o in self.objects)

    def per_video(self) -> dict[str, Scores]:
        """Mean over each video's objects, in video order."""
        by_video: dict[str, list[ObjectResult]] = defaultdict(list)
        for obj in self.objects:
            by_video[obj.video].append(obj)
        return {video: _scores(objs) for video, objs in by_video.items()}

    def per_bucket(self) -> dict[str, Scores]:
        """Mean over the objects of each size bucket (objects given no bucket are left out), sorted by name."""
        by_bucket: dict[str, list[ObjectResult]] = defaultdict(list)
        for obj in self.objects:
            if obj.bucket is not None:
                by_bucket[obj.bucket].append(obj)
        return {bucket: _scores(by_bucket[bucket]) for bucket in sorted(by_bucket)}


@dataclass(frozen=True)
class _Task:
    """One video to score: the ground-truth files of its evaluated frames, grouped per object or per frame."""

    video: str
    layout: str
    gt_root: str
    pred_root: str
    objects: tuple[tuple[str, tuple[str, ...]], ...] = ()
    frames: tuple[str, ...] = ()

    def relative_files(self) -> list[str]:
        """Paths below the video folder of every file to read (the same names under both roots)."""
        if self.layout == OBJECTS:
            return [f"{obj}/{frame}" for obj, frames in self.objects for frame in frames]
        return list(self.frames)


@dataclass(frozen=True)
class _Outcome:
    video: str
    objects: tuple[tuple[str, ObjectScores], ...] = ()
    unscored: tuple[tuple[str, str], ...] = ()
    error: str | None = None


def _group_videos(root: str, names: Iterable[str], *, ground_truth: bool) -> dict[str, list[str]]:
    """``{video: [path below the video folder]}`` of the PNGs under ``root``. Ground-truth names must be plain
    and at most ``video/obj/frame.png`` deep; prediction files the ground truth does not name are never read, so
    they are only grouped."""
    videos: dict[str, list[str]] = defaultdict(list)
    for name in names:
        parts = name.split("/")
        if len(parts) < 2 or parts[0] == MARKER_DIR or not name.endswith(".png"):
            continue
        if ground_truth:
            if len(parts) > 3:
                raise EvaluationError(
                    f"{storage.join(root, name)}: ground-truth file nested too deep; the ground-truth root must be "
                    "the folder that holds the video folders (for SA-V: .../Annotations_6fps)")
            try:
                for part in parts:
                    check_name(part, what="path component", file=storage.join(root, name), video=parts[0])
            except SavFormatError as exc:
                raise EvaluationError(str(exc)) from exc
        videos[parts[0]].append("/".join(parts[1:]))
    return videos


def _layout(video: str, gt_root: str, files: list[str]) -> str:
    depths = {f.count("/") for f in files}
    if depths == {0}:
        return PALETTE
    if depths == {1}:
        return OBJECTS
    odd = next(f for f in files if f.count("/") == 0)
    raise EvaluationError(f"{storage.join(gt_root, video, odd)}: video {video} mixes frame PNGs with object "
                          "folders; use one layout per video")


def _skip(frames: list[str], skip_first_last: bool) -> tuple[str, ...]:
    frames = sorted(frames)
    return tuple(frames[1:-1] if skip_first_last else frames)


def _plan(video: str, gt_root: str, pred_root: str, gt_files: list[str], pred_files: set[str],
          skip_first_last: bool) -> _Task:
    layout = _layout(video, gt_root, gt_files)
    if layout == PALETTE:
        task = _Task(video, layout, gt_root, pred_root, frames=_skip(gt_files, skip_first_last))
    else:
        per_obj: dict[str, list[str]] = defaultdict(list)
        for rel in gt_files:
            obj, frame = rel.split("/")
            per_obj[obj].append(frame)
        task = _Task(video, layout, gt_root, pred_root,
                     objects=tuple((obj, _skip(per_obj[obj], skip_first_last)) for obj in sorted(per_obj)))
    missing = [rel for rel in task.relative_files() if rel not in pred_files]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise EvaluationError(f"{storage.join(pred_root, video, missing[0])}: prediction not found{more} "
                              f"(predictions must use the ground truth's {layout} layout)")
    return task


def _read_local(uri: str) -> bytes:
    """:func:`storage.read_bytes` of a local file, with the same errors, in half the time: a mask is read in
    about 10 us with ``open``, 20 us through pathlib."""
    path = uri[len(storage.FILE_SCHEME):] if uri.startswith(storage.FILE_SCHEME) else uri
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise storage.NotFoundError(f"{uri}: not found") from exc
    except (NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        raise storage.StorageError(f"{uri}: {exc.strerror or exc}") from exc


def _reader(task: _Task) -> Callable[[str], bytes]:
    """Read files of the task's video by URI; on GCS fetch them all up front in parallel threads."""
    if not (storage.is_gcs(task.gt_root) or storage.is_gcs(task.pred_root)):
        return _read_local
    from concurrent.futures import ThreadPoolExecutor

    rel = task.relative_files()
    uris = sorted({storage.join(root, task.video, r) for root in (task.gt_root, task.pred_root) for r in rel})
    with ThreadPoolExecutor(max_workers=_FETCH_THREADS) as pool:
        fetched = dict(zip(uris, pool.map(storage.read_bytes, uris)))
    return fetched.__getitem__


def _check_single_object(mask: Mask, uri: str) -> None:
    """The official check that an SA-V PNG holds one object: at most two distinct values (looked at in the box;
    outside it everything is 0)."""
    if mask.box is None:
        return
    crop = mask.pixels
    low, top = cv2.minMaxLoc(crop)[:2]
    if top <= 1 or low == top:
        return  # 0 and 1, or one value in the whole box
    n_top = int(np.count_nonzero(crop == top))
    if low == 0 and n_top == np.count_nonzero(crop):
        return
    if low > 0 and crop.size == mask.shape[0] * mask.shape[1] and \
            n_top + int(np.count_nonzero(crop == low)) == crop.size:
        return  # no 0 anywhere: two values over the whole image
    values = np.unique(crop).tolist()
    raise EvaluationError(f"{uri}: holds more than one object (values {values[:8]}); the SA-V layout has one "
                          "object per PNG")


def _check_shapes(gt: tuple[int, ...], pred: tuple[int, ...], gt_uri: str, pred_uri: str) -> None:
    if gt != pred:
        raise EvaluationError(f"{pred_uri}: shape {pred[0]}x{pred[1]} does not match the ground truth "
                              f"{gt_uri} ({gt[0]}x{gt[1]})")


def _pair(read: Callable[[str], bytes], video: str, gt_uri: str, pred_uri: str) -> tuple[np.ndarray, np.ndarray]:
    gt = decode_mask_png(read(gt_uri), file=gt_uri, video=video)
    pred = decode_mask_png(read(pred_uri), file=pred_uri, video=video)
    _check_shapes(gt.shape, pred.shape, gt_uri, pred_uri)
    return gt, pred


class _RecurringMasks:
    """The empty masks of one video's PNG files, by their bytes: an empty mask that recurs is decoded once.

    In the SA-V layout every frame where an object is absent is an empty PNG, and one tool writes the same bytes
    for it each time (as do the ground truth's writer and, for predictions, savflow and most others): on the
    real SA-V masks of benchmarks/bench_evaluate.py a fifth of the files are such copies."""

    def __init__(self, video: str, max_file: int = 4096) -> None:
        self.video = video
        self.max_file = max_file
        self.empty: dict[bytes, Mask] = {}

    def mask(self, data: bytes, uri: str) -> Mask:
        """The :class:`Mask` of the PNG ``data`` read from ``uri``, checked to hold one object."""
        known = self.empty.get(data)
        if known is not None:
            return known
        mask = decode_mask(data, file=uri, video=self.video)
        if mask.box is None:
            if len(data) <= self.max_file:
                self.empty[data] = mask
        else:
            _check_single_object(mask, uri)
        return mask


def _score_objects_layout(task: _Task, read: Callable[[str], bytes]) -> Iterator[tuple[str, ObjectScores]]:
    """Object by object; each object's frames are its own folder's. A mask is kept as its bounding box and the
    pixels in it (:func:`~savflow.evaluate.png.decode_mask`), which is all that scoring looks at."""
    masks = _RecurringMasks(task.video)
    for obj, frames in task.objects:
        scores = ObjectScores()
        for frame in frames:
            gt_uri = storage.join(task.gt_root, task.video, obj, frame)
            pred_uri = storage.join(task.pred_root, task.video, obj, frame)
            gt = masks.mask(read(gt_uri), gt_uri)
            pred = masks.mask(read(pred_uri), pred_uri)
            _check_shapes(gt.shape, pred.shape, gt_uri, pred_uri)
            scores.add_masks(frame[:-len(".png")], pred, gt)
        yield obj, scores


def _labels(label: np.ndarray) -> set[int]:
    """Non-zero values of a palette mask (counted inside the bounding box of the non-zero pixels)."""
    box = bbox(label)
    if box is None:
        return set()
    crop = label[box[0]:box[1] + 1, box[2]:box[3] + 1]
    counts = np.bincount(crop.ravel(), minlength=256)
    return {int(v) for v in np.flatnonzero(counts) if v != 0}


def _score_palette_layout(task: _Task, read: Callable[[str], bytes]) -> Iterator[tuple[str, ObjectScores]]:
    """Frame by frame, every object seen so far in either mask; objects only ever predicted are dropped later,
    as the official benchmark reports ground-truth objects only."""
    per_value: dict[int, ObjectScores] = {}
    for frame in task.frames:
        gt, pred = _pair(read, task.video, storage.join(task.gt_root, task.video, frame),
                         storage.join(task.pred_root, task.video, frame))
        for value in _labels(gt) | _labels(pred):
            per_value.setdefault(value, ObjectScores())
        for value, scores in per_value.items():
            scores.add(frame[:-len(".png")], pred == value, gt == value)
    for value in sorted(per_value):
        yield f"{value - 1:03d}", per_value[value]


def _run_task(task: _Task) -> _Outcome:
    """Score one video; bad input becomes the outcome's error, naming the video and the file, so that one bad
    video neither stops the other workers nor reaches the parent as a traceback."""
    try:
        read = _reader(task)
        score = _score_objects_layout if task.layout == OBJECTS else _score_palette_layout
        scored = list(score(task, read))
    except (EvaluationError, SavFormatError, storage.StorageError) as exc:
        named = isinstance(exc, SavFormatError) and exc.video == task.video
        return _Outcome(task.video, error=str(exc) if named else f"video {task.video}: {exc}")
    except Exception as exc:  # noqa: BLE001  (anything else a bad file can provoke; the reason is kept)
        log.debug("video %s failed", task.video, exc_info=True)
        return _Outcome(task.video, error=f"video {task.video}: {type(exc).__name__}: {exc}")
    counts = {obj: len(frames) for obj, frames in task.objects}
    unscored = tuple((obj, _unscored_reason(counts[obj])) for obj, scores in scored
                     if not scores.reported and task.layout == OBJECTS)
    return _Outcome(task.video, tuple((obj, s) for obj, s in scored if s.reported), unscored)


def _unscored_reason(evaluated_frames: int) -> str:
    if evaluated_frames == 0:
        return "no frame left to evaluate (the first and last annotated frames are skipped)"
    return f"empty in the ground truth on all {evaluated_frames} evaluated frames"


def _run_all(tasks: list[_Task], num_workers: int, progress: bool) -> list[_Outcome]:
    bar = Progress(len(tasks), "evaluate", "video", enabled=progress)
    outcomes: list[_Outcome] = []
    try:
        if num_workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                outcomes.append(_run_task(task))
                bar.update()
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=min(num_workers, len(tasks))) as pool:
                for future in as_completed([pool.submit(_run_task, t) for t in tasks]):
                    outcomes.append(future.result())
                    bar.update()
    finally:
        bar.close()
    return outcomes


def _raise_all(problems: list[str], what: str) -> None:
    if problems:
        shown = problems[:_MAX_LISTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise EvaluationError(f"{what}:\n  " + "\n  ".join(shown) + more)


def _bucket(buckets: Mapping[str, Mapping[str | int, str]] | None, video: str, obj: str) -> str | None:
    if not buckets or video not in buckets:
        return None
    per_obj = buckets[video]
    if obj in per_obj:
        return per_obj[obj]
    return per_obj.get(int(obj)) if obj.isdigit() else None


def _select_videos(gt_root: str, pred_root: str, gt_videos: Mapping[str, list[str]],
                   pred_videos: Mapping[str, list[str]], videos: list[str] | None, strict: bool
                   ) -> tuple[list[str], set[str]]:
    """The videos to score, in order, and those of them that have no predictions (an error in strict mode)."""
    wanted = sorted(gt_videos) if videos is None else list(videos)
    if len(set(wanted)) != len(wanted):
        raise EvaluationError("the video list names a video twice")
    _raise_all([f"{storage.join(gt_root, v)}: video {v} has no ground truth" for v in wanted if v not in gt_videos],
               "videos not in the ground truth")
    missing = [v for v in wanted if v not in pred_videos]
    if strict:
        extra = sorted(set(pred_videos) - set(gt_videos)) if videos is None else []
        _raise_all([f"{storage.join(pred_root, v)}: video {v} has no predictions (strict mode)" for v in missing]
                   + [f"{storage.join(pred_root, v)}: video {v} is not in the ground truth (strict mode)"
                      for v in extra], "strict mode: predictions and ground truth hold different videos")
    for video in missing:
        log.warning("video %s: no predictions under %s; skipped (use strict mode to fail instead)", video, pred_root)
    return wanted, set(missing)


def evaluate(gt_root: str, pred_root: str, videos: list[str] | None = None, *, strict: bool = False,
             skip_first_last: bool = True, num_workers: int | None = None,
             size_buckets: Mapping[str, Mapping[str | int, str]] | None = None,
             progress: bool = False, max_failures: int = 0) -> EvalResult:
    """Score ``pred_root`` against ``gt_root`` (storage URIs; see the module docstring for layouts).

    ``videos``: the videos to score (all of the ground truth's when None); each must be in the ground truth.
    ``strict``: every such video must have predictions (and, without ``videos``, the prediction root must hold
    no other videos), as the official ``--strict``; otherwise videos without predictions are skipped and listed.
    ``size_buckets``: optional ``{video: {obj: bucket}}`` (obj as ``"001"`` or 1), e.g. SA-V's
    ``masklet_size_bucket``, giving :meth:`EvalResult.per_bucket`.
    Raises :class:`EvaluationError` naming the files at fault: a missing prediction PNG, a shape mismatch, a PNG
    that is not readable or holds several objects, a layout that is not one of the two, a name that is not a
    plain file name. Every video is scored before a bad one fails the run, so the error lists all bad videos.
    ``max_failures``: up to this many videos with such bad input are left out and listed in
    :attr:`EvalResult.failures` instead (stage ``plan`` or ``score``), and the others are scored; the default 0
    fails the run, as the official benchmark does, since a global J&F over fewer videos is another number."""
    start = time.monotonic()
    gt_videos = _group_videos(gt_root, storage.list_prefix(gt_root), ground_truth=True)
    pred_videos = _group_videos(pred_root, storage.list_prefix(pred_root), ground_truth=False)
    if not gt_videos:
        raise EvaluationError(f"{gt_root}: no ground-truth masks found; point the ground-truth root at the folder "
                              "that holds the video folders (for SA-V: .../Annotations_6fps)")
    wanted, missing = _select_videos(gt_root, pred_root, gt_videos, pred_videos, videos, strict)
    tasks: list[_Task] = []
    failures: list[Failure] = []
    for video in wanted:
        if video in missing:
            continue
        try:
            tasks.append(_plan(video, gt_root, pred_root, gt_videos[video], set(pred_videos[video]),
                               skip_first_last))
        except EvaluationError as exc:
            failures.append(Failure(video, "plan", str(exc)))
    if len(failures) > max_failures:
        _raise_all([f.reason for f in failures], "cannot evaluate")
    if not tasks:
        _raise_all([f.reason for f in failures], "cannot evaluate")
        raise EvaluationError(f"{pred_root}: no predictions for any of the {len(wanted)} videos")
    outcomes = _run_all(tasks, num_workers or available_cpus(), progress)
    order = {video: i for i, video in enumerate(wanted)}
    failures += sorted((Failure(o.video, "score", o.error) for o in outcomes if o.error), key=lambda f: order[f.video])
    if len(failures) > max_failures:
        _raise_all([f.reason for f in failures], "evaluation failed")
    for failure in failures:
        log.error("video %s: not scored (%s): %s", failure.video, failure.stage, failure.reason)
    objects: list[ObjectResult] = []
    unscored: list[UnscoredObject] = []
    for outcome in sorted((o for o in outcomes if not o.error), key=lambda o: order[o.video]):
        unscored += [UnscoredObject(outcome.video, obj, reason) for obj, reason in outcome.unscored]
        for obj, scores in outcome.objects:
            j, f = scores.means()
            objects.append(ObjectResult(outcome.video, obj, j, f, tuple(scores.frames), tuple(scores.j),
                                        tuple(scores.f), _bucket(size_buckets, outcome.video, obj)))
    for item in unscored:
        log.warning("video %s object %s: not scored: %s", item.video, item.obj, item.reason)
    if not objects:
        _raise_all([f.reason for f in failures], "evaluation failed")
        raise EvaluationError(f"{gt_root}: no object could be scored")
    return EvalResult(objects, gt_root, pred_root, skip_first_last, time.monotonic() - start, wanted,
                      [v for v in wanted if v in missing], unscored, failures)


def size_buckets_from_manual(uris: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{video: {obj: bucket}}`` from SA-V ``*_manual.json`` files that carry ``masklet_size_bucket``."""
    out: dict[str, dict[str, str]] = {}
    for uri in uris:
        ann = parse_manual_json(storage.read_bytes(uri), file=uri)
        if ann.size_buckets is not None:
            out[ann.video_id] = {f"{obj:03d}": str(b) for obj, b in zip(ann.masklet_ids, ann.size_buckets)}
    return out
