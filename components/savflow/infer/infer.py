"""The inference step: SAM 2 over one shard of videos, from object storage to object storage, resumable.

Layout (every root is a storage URI)::

    {frames}/{video}/{frame:05d}.jpg                   JPEGImages_24fps-style root
    {masks}/{video}/{obj:03d}/{frame:05d}.png          Annotations_6fps-style root (the prompts; also the GT)
    {output}/{video}/{obj:03d}/{frame:05d}.png         predictions, same layout: the evaluator's --pred-root
    {output}/_done/{video}.json                        completion marker, written after the video's PNGs
    {output}/_reports/infer-{shard}-of-{N}-{digest}.json   failure report of one shard run

A video is skipped when its marker exists; a video that fails (unreadable frames, missing or bad masks) is
recorded in the report and the others go on. While one video runs on the model, the next one's frames and
masks are fetched to local scratch, and each video's scratch is removed once its outputs are uploaded.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from savflow.common import markers, savformat, storage
from savflow.common.failures import FailureReport
from savflow.infer import shard_plan, vos
from savflow.infer.predictor import LoadedPredictor, build_predictor
from savflow.infer.inputs import Sources

log = logging.getLogger(__name__)

REPORTS_DIR = "_reports"


@dataclass
class InferResult:
    videos: list[str]  # this shard's videos, in processing order
    report: FailureReport
    report_uri: str
    exit_code: int


def _fetch(sources: Sources, local_root: Path, video: str, workers: int) -> tuple[Path, vos.MaskIndex]:
    frames_dir, masks_dir = sources.fetch(local_root, video, workers=workers)
    index = vos.MaskIndex.scan(video, masks_dir)
    vos.frame_numbers(frames_dir)  # no frames at all is a fetch failure, not a model one
    return frames_dir, index


def report_uri(output: str, shard: int, num_shards: int, videos: list[str]) -> str:
    """One report per shard run; the digest of the video list keeps explicit per-pod lists apart."""
    digest = hashlib.sha256("\n".join(videos).encode()).hexdigest()[:10]
    return storage.join(output, REPORTS_DIR, f"infer-{shard:04d}-of-{num_shards:04d}-{digest}.json")


def infer(checkpoint: str, model_config: str, frames: str, masks: str, output: str, videos: list[str] | None = None,
          shard: int = 0, num_shards: int = 1, use_all_masks: bool = False, track_later_objects: bool = False,
          device: str = "auto", compile: bool = False, max_failures: int = 0, apply_postprocessing: bool = False,
          workers: int = 8) -> InferResult:
    """Segment every video of shard ``shard`` of ``num_shards`` (of ``videos``, default all under the roots).

    With ``num_shards > 1`` each call plans the same balanced shards (frames x objects) and takes its own; the
    pipeline instead plans once (``savflow plan-shards``) and hands each pod its list with one shard.
    """
    for video in videos or []:
        savformat.check_name(video)
    selected = shard_plan.shard_videos(frames, masks, videos, shard, num_shards)
    report = FailureReport(step="infer", total=len(selected))
    uri = report_uri(output, shard, num_shards, selected)
    done = markers.done_units(output)
    todo = [v for v in selected if v not in done]
    report.skipped = len(selected) - len(todo)
    log.info("infer shard %d/%d: %d videos, %d already complete", shard, num_shards, len(selected),
             report.skipped)
    if todo:
        loaded = build_predictor(checkpoint, model_config, device=device, compile=compile,
                                 apply_postprocessing=apply_postprocessing)
        settings = {"checkpoint": checkpoint, "model_config": model_config, "use_all_masks": use_all_masks,
                    "track_later_objects": track_later_objects, "device": str(loaded.device),
                    "compiled": loaded.compiled, "hole_filling": loaded.hole_filling}
        _run(loaded, todo, Sources.resolve(frames, masks), output, report, settings, workers=workers)
    report.write(uri)
    log.info("%s; report at %s", report.summary(), uri)
    return InferResult(videos=selected, report=report, report_uri=uri, exit_code=report.exit_code(max_failures))


def _run(loaded: LoadedPredictor, videos: list[str], sources: Sources, output: str, report: FailureReport,
         settings: dict, *, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="savflow-infer-") as tmp, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch") as prefetch:
        scratch = Path(tmp)
        pending: dict[str, Future] = {}

        def submit(i: int) -> None:
            if i < len(videos):
                pending[videos[i]] = prefetch.submit(_fetch, sources, scratch / videos[i], videos[i], workers)

        submit(0)
        for i, video in enumerate(videos):
            submit(i + 1)
            try:
                frames_dir, masks = pending.pop(video).result()
            except Exception as exc:  # noqa: BLE001  (one bad video must not stop the shard)
                report.fail(video, "fetch", f"{type(exc).__name__}: {exc}")
                shutil.rmtree(scratch / video, ignore_errors=True)
                continue
            stage = "segment"
            try:
                out_dir = scratch / video / "pred"
                stats = _segment(loaded, frames_dir, masks, out_dir, settings)
                stage = "upload"
                uploaded = storage.upload_tree(out_dir, storage.join(output, video), workers=workers)
                markers.write_marker(output, video, {
                    **settings, "video": video, "objects": stats.objects, "frames": stats.frames,
                    "frames_tracked": stats.frames_tracked, "pngs": uploaded.files, "seconds": stats.seconds,
                })
                report.done += 1
                log.info("%s: %d objects, %d frames (%d tracked) in %.1f s, %.1f frames/s, %d PNGs", video,
                         stats.objects, stats.frames, stats.frames_tracked, stats.seconds,
                         stats.frames_tracked / max(stats.seconds, 1e-9), uploaded.files)
            except Exception as exc:  # noqa: BLE001
                report.fail(video, stage, f"{type(exc).__name__}: {exc}")
                _release_accelerator_memory(loaded)
            finally:
                shutil.rmtree(scratch / video, ignore_errors=True)


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
                                  track_later=settings["track_later_objects"])
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
