"""The inference step: SAM 2 over one shard of videos, from object storage to object storage, resumable.

Layout (every root is a storage URI)::

    {frames}/{video}/{frame:05d}.jpg                   JPEGImages_24fps-style root
    {masks}/{video}/{obj:03d}/{frame:05d}.png          Annotations_6fps-style root (the prompts; also the GT)
    {output}/{video}/{obj:03d}/{frame:05d}.png         predictions, same layout: the evaluator's --pred-root
    {output}/_done/{video}.json                        completion marker, written after the video's PNGs
    {output}/_reports/infer-{shard}-of-{N}-{digest}.json   failure report of one shard run

A video's marker records its key (:func:`prediction_key`: the checkpoint's SHA-256, the model config, the
prompting and post-processing options, the identity of the video's inputs and the output format). A re-run skips
a marked video with the same key; predictions made differently (another checkpoint, say) are refused, naming
what differs, unless ``overwrite`` asks to redo them. A video that fails (unreadable frames, missing or bad
masks) is recorded in the report and the others go on. Whatever an unfinished earlier attempt left of a video
is deleted before it is uploaded again. While one video runs on the model, the next one's frames and masks are
fetched to local scratch, and each video's scratch is removed once its outputs are uploaded.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from savflow.common import markers, provenance, savformat, storage
from savflow.common.checkpoints import sha256_file
from savflow.common.devices import AUTO
from savflow.common.failures import FailureReport
from savflow.common.progress import Progress
from savflow.infer import shard_plan, vos
from savflow.infer.defaults import SCORE_THRESHOLD
from savflow.infer.predictor import LoadedPredictor, build_predictor, local_checkpoint
from savflow.infer.inputs import Sources

log = logging.getLogger(__name__)

REPORTS_DIR = "_reports"


class PredictionsDiffer(ValueError):
    """The output holds predictions of these videos made differently (another checkpoint, other options)."""


@dataclass
class InferResult:
    videos: list[str]  # this shard's videos, in processing order
    report: FailureReport
    report_uri: str
    exit_code: int


def _fetch(sources: Sources, local_root: Path, video: str, workers: int) -> tuple[Path, vos.MaskIndex]:
    frames_dir, masks_dir = sources.fetch(local_root, video, workers=workers)
    index = vos.MaskIndex.scan(video, masks_dir, origin=storage.join(sources.masks, video))
    vos.frame_numbers(frames_dir)  # no frames at all is a fetch failure, not a model one
    return frames_dir, index


def report_uri(output: str, shard: int, num_shards: int, videos: list[str]) -> str:
    """One report per shard run; the digest of the video list keeps explicit per-pod lists apart."""
    digest = hashlib.sha256("\n".join(videos).encode()).hexdigest()[:10]
    return storage.join(output, REPORTS_DIR, f"infer-{shard:04d}-of-{num_shards:04d}-{digest}.json")


def prediction_key(*, checkpoint_sha256: str | None, model_config: str, use_all_masks: bool,
                   track_later_objects: bool, apply_postprocessing: bool, score_thresh: float) -> dict:
    """What determines a video's predictions, less its inputs (added per video): the weights (by content, so a
    copy of a checkpoint elsewhere is the same checkpoint), the model config and the options that change the
    masks. The device and ``compile`` are recorded in the marker but not compared."""
    return {"format": provenance.INFER_FORMAT, "checkpoint_sha256": checkpoint_sha256, "model_config": model_config,
            "use_all_masks": use_all_masks, "track_later_objects": track_later_objects,
            "apply_postprocessing": apply_postprocessing, "score_thresh": score_thresh}


def infer(checkpoint: str, model_config: str, frames: str, masks: str, output: str, videos: list[str] | None = None,
          shard: int = 0, num_shards: int = 1, use_all_masks: bool = False, track_later_objects: bool = False,
          device: str = AUTO, compile: bool = False, max_failures: int = 0, apply_postprocessing: bool = False,
          workers: int = 8, overwrite: bool = False, score_thresh: float = SCORE_THRESHOLD) -> InferResult:
    """Segment every video of shard ``shard`` of ``num_shards`` (of ``videos``, default all under the roots).

    With ``num_shards > 1`` each call plans the same balanced shards (frames x objects) and takes its own; the
    pipeline instead plans once (``savflow plan-shards``) and hands each pod its list with one shard.
    Predictions in ``output`` made differently raise :class:`PredictionsDiffer`, unless ``overwrite``.
    ``score_thresh``: the mask-logit threshold (``vos_inference.py --score_thresh``).
    """
    for video in videos or []:
        savformat.check_name(video)
    selected = shard_plan.shard_videos(frames, masks, videos, shard, num_shards)
    report = FailureReport(step="infer", total=len(selected))
    uri = report_uri(output, shard, num_shards, selected)
    sources = Sources.resolve(frames, masks)
    with tempfile.TemporaryDirectory(prefix="savflow-infer-weights-") as weights_dir:
        local = local_checkpoint(checkpoint, Path(weights_dir)) if checkpoint and selected else None
        base = prediction_key(checkpoint_sha256=sha256_file(local) if local else None, model_config=model_config,
                              use_all_masks=use_all_masks, track_later_objects=track_later_objects,
                              apply_postprocessing=apply_postprocessing, score_thresh=score_thresh)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="inputs") as pool:
            keys = {v: {**base, "inputs": inputs} for v, inputs in zip(selected, pool.map(sources.identity, selected))}
        todo = _plan(output, selected, keys, overwrite=overwrite)
        report.skipped = len(selected) - len(todo)
        log.info("infer shard %d/%d: %d videos, %d already complete", shard, num_shards, len(selected),
                 report.skipped)
        if todo:
            loaded = build_predictor(checkpoint, model_config, device=device, compile=compile,
                                     apply_postprocessing=apply_postprocessing, local_file=local)
            settings = {"checkpoint": checkpoint, "model_config": model_config, "use_all_masks": use_all_masks,
                        "track_later_objects": track_later_objects, "score_thresh": score_thresh,
                        "device": str(loaded.device),
                        "compiled": loaded.compiled, "hole_filling": loaded.hole_filling}
            _run(loaded, todo, sources, output, report, settings, keys, workers=workers)
    report.write(uri)
    log.info("%s; report at %s", report.summary(), uri)
    return InferResult(videos=selected, report=report, report_uri=uri, exit_code=report.exit_code(max_failures))


def _plan(output: str, selected: list[str], keys: dict[str, dict], *, overwrite: bool) -> list[str]:
    """The videos to predict: unmarked ones, and (with ``overwrite``) those marked with another key, whose
    markers are removed first; without ``overwrite`` those raise :class:`PredictionsDiffer`."""
    done = markers.done_units(output)
    found = markers.read_markers(output, [v for v in selected if v in done])
    diffs = {v: provenance.differences(provenance.key_of(payload), keys[v]) for v, payload in found.items()}
    diffs = {v: d for v, d in diffs.items() if d}
    if diffs and not overwrite:
        raise PredictionsDiffer(f"{output}: predictions of {provenance.summarize(diffs)}; write them to another "
                                "output, or pass --overwrite to predict those videos again")
    for video in diffs:
        markers.clear_marker(output, video)
    if diffs:
        log.warning("infer: predicting again %s (--overwrite)", provenance.summarize(diffs))
    return [v for v in selected if v not in found or v in diffs]


def _run(loaded: LoadedPredictor, videos: list[str], sources: Sources, output: str, report: FailureReport,
         settings: dict, keys: dict[str, dict], *, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="savflow-infer-") as tmp, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch") as prefetch, \
            Progress(len(videos), "infer", "video") as bar:
        scratch = Path(tmp)
        pending: dict[str, Future] = {}

        def submit(i: int) -> None:
            if i < len(videos):
                pending[videos[i]] = prefetch.submit(_fetch, sources, scratch / videos[i], videos[i], workers)

        submit(0)
        frames, started = 0, time.monotonic()
        for i, video in enumerate(videos):
            submit(i + 1)
            try:
                frames += _one_video(loaded, video, pending.pop(video), scratch, output, report, settings, keys[video],
                                     workers=workers)
            finally:
                shutil.rmtree(scratch / video, ignore_errors=True)
            rate = frames / max(time.monotonic() - started, 1e-9)
            bar.update(note=f"{rate:.1f} frames/s, {len(report.failures)} failed")


def _one_video(loaded: LoadedPredictor, video: str, fetched: Future, scratch: Path, output: str,
               report: FailureReport, settings: dict, key: dict, *, workers: int) -> int:
    """Segment, upload and mark one video; a failure is reported, never raised (one bad video must not stop the
    shard). Returns the frames tracked (0 on failure)."""
    try:
        frames_dir, masks = fetched.result()
    except Exception as exc:  # noqa: BLE001
        report.fail(video, "fetch", f"{type(exc).__name__}: {exc}")
        return 0
    stage = "segment"
    try:
        out_dir = scratch / video / "pred"
        stats = _segment(loaded, frames_dir, masks, out_dir, settings)
        stage = "upload"
        storage.delete_prefix(storage.join(output, video))  # an earlier attempt's PNGs
        uploaded = storage.upload_tree(out_dir, storage.join(output, video), workers=workers)
        markers.write_marker(output, video, {
            **settings, provenance.KEY_FIELD: key, "video": video, "objects": stats.objects, "frames": stats.frames,
            "frames_tracked": stats.frames_tracked, "pngs": uploaded.files, "seconds": stats.seconds,
        })
    except Exception as exc:  # noqa: BLE001
        report.fail(video, stage, f"{type(exc).__name__}: {exc}")
        _release_accelerator_memory(loaded)
        return 0
    report.done += 1
    log.info("%s: %d objects, %d frames (%d tracked) in %.1f s, %.1f frames/s, %d PNGs", video, stats.objects,
             stats.frames, stats.frames_tracked, stats.seconds, stats.frames_tracked / max(stats.seconds, 1e-9),
             uploaded.files)
    return stats.frames_tracked


def _segment(loaded: LoadedPredictor, frames_dir: Path, masks: vos.MaskIndex, out_dir: Path,
             settings: dict) -> vos.SegmentStats:
    """Run the model and write one PNG per object and annotated frame under ``out_dir`` (encoded off-thread)."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="png") as encoders:
        writes: list[Future] = []

        def sink(obj: int, frame: int, mask: np.ndarray) -> None:
            path = out_dir / f"{obj:03d}" / f"{frame:05d}.png"
            writes.append(encoders.submit(_write_png, path, mask))

        stats = vos.segment_video(loaded.model, loaded.device, frames_dir, masks, sink,
                                  use_all_masks=settings["use_all_masks"],
                                  track_later=settings["track_later_objects"], score_thresh=settings["score_thresh"])
        for write in writes:
            write.result()
    return stats


def _write_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(savformat.encode_object_png(mask))


def _release_accelerator_memory(loaded: LoadedPredictor) -> None:
    """After a failed video (possibly out of memory), hand cached CUDA blocks back before the next one."""
    if loaded.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
