"""Stage a raw SA-V split into what training and evaluation read: one shard of the videos per call.

* train (``{video}.mp4`` + ``{video}_manual.json``): every ``sample_rate``-th frame of the 24 fps video becomes
  ``JPEGImages_24fps/{video}/{frame:05d}.jpg`` (numbered by its index in the full video), the annotation is copied
  unchanged to ``annotations/{video}_manual.json`` (an object of its own in the ``dir`` layout, a member of the
  video's archive in the ``tar`` layout); with ``masks=True`` also the per-object PNGs of every annotated frame,
  ``Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png`` (:func:`savflow.common.savformat.manual_to_object_pngs`:
  every object on every annotated frame, empty where it is absent), the val/test layout that the evaluator and
  inference read, so that a held-out part of train (the only SA-V videos with ``masklet_size_bucket``) can be
  scored per size bucket;
* val/test (``JPEGImages_24fps`` + ``Annotations_6fps``): the JPEGs and per-object PNGs are copied byte for byte
  (every ``sample_rate``-th frame, all masks), not re-encoded.

Each video is written whole, then marked complete (:mod:`savflow.common.markers`, the marker also being the
index, see :mod:`savflow.common.staged`, and recording the video's key: its source objects' sizes and versions,
sample rate, JPEG quality, layout, masks and output format, :func:`savflow.stage.plan.video_key`). A re-run skips
the marked videos with the same key and redoes the others from scratch, so a killed run costs only the videos in
flight, and output made differently is never reported "already complete": a video marked with another key is
unmarked first, so readers never see a half-replaced video, and the files its old marker lists are deleted. A video that cannot be staged (missing or malformed annotation, corrupt or truncated mp4, a frame count
that disagrees with ``video_frame_count``) is recorded in the shard's report and the others go on; the result's
``exit_code`` is non-zero when more than ``max_failures`` failed.

Source mp4s in object storage are downloaded to a local scratch file first: MP4 demuxing seeks (the index may sit
at the end of the file), which a local file does in microseconds and a bucket in one request each, and one
download is a single request. Fetching the next video's inputs and publishing the previous one (upload, marker)
run in background threads while the current one is decoded, so object-store latency hides behind the CPU work.

The parts: :mod:`savflow.stage.plan` (which videos this shard does), :mod:`savflow.stage.video_builders` (a
train or a val/test video to a staged one, and its publication), :mod:`savflow.stage.overlap` (the three phases
overlapped across videos); this module runs them for one shard and writes its report.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

from savflow.common import markers, provenance, savformat, storage
from savflow.common.progress import Progress
from savflow.common import staged as lay
from savflow.common.cpus import available_cpus
from savflow.common.failures import Failure, FailureReport
from savflow.stage.overlap import Phases, run_overlapped
from savflow.stage.plan import check_args, check_sample_rate, plan_shard, video_key
from savflow.stage.raw_split import scan_source
from savflow.stage.video_builders import Fetched, VideoFailed, stager_for

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What one call of :func:`stage` did for its shard."""

    split: str
    layout: str
    shard: int
    num_shards: int
    videos: list[str]
    staged: list[str]
    skipped: list[str]
    redone: dict[str, list[str]]  # staged again because they had been made differently: what differed
    failures: list[Failure]
    frames_written: int
    frames_decoded: int
    seconds: float
    report_uri: str
    exit_code: int

    def summary(self) -> str:
        rate = self.frames_decoded / self.seconds if self.seconds > 0 else 0.0
        redone = f" ({len(self.redone)} of them made differently before)" if self.redone else ""
        return (f"stage shard {self.shard} of {self.num_shards} ({self.split}, {self.layout} layout): "
                f"{len(self.videos)} videos: {len(self.staged)} staged{redone}, {len(self.skipped)} already complete, "
                f"{len(self.failures)} failed; {self.frames_written} frames written, {self.frames_decoded} read "
                f"in {self.seconds:.1f} s ({rate:.1f} frames/s); report {self.report_uri}")


def stage(source: str, dest: str, videos: list[str] | None = None, shard: int = 0, num_shards: int = 1,
          sample_rate: int = 1, jpeg_quality: int = 95, workers: int | None = None,
          layout: Literal["dir", "tar"] | None = None, max_failures: int = 0, *,
          scratch: str | Path | None = None, progress: bool = True, masks: bool = False) -> StageResult:
    """Stage shard ``shard`` of ``num_shards`` of the split at ``source`` into ``dest``.

    ``videos`` restricts the run to these ids (default: every video in the source); the shard is a balanced,
    deterministic share of them (:func:`savflow.common.lpt_shards.plan_shards`, weighted by frame count for
    val/test and by mp4 size for train), so N calls with shard 0..N-1 cover every video exactly once.
    ``layout`` defaults to ``tar`` for a train split and ``dir`` for val/test (what the evaluator reads
    directly). ``workers`` threads encode JPEGs (default: the CPUs this process may use); ``scratch`` is the
    local folder for downloads and archives being built (default: the system temp folder).
    ``masks``: for a train split, also write ``Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png`` from the
    manual annotation (val/test always have them); needs a ``sample_rate`` that keeps the annotated frames.
    A complete video is skipped only when its marker's key equals this run's; the others are redone.
    Writes ``{dest}/_reports/stage-shard-{K}-of-{N}.json`` and ``{dest}/file_list.txt`` (every complete video).
    """
    check_args(shard, num_shards, sample_rate, jpeg_quality, layout, max_failures)
    started = time.monotonic()
    src = scan_source(source)
    masks = masks and src.kind == "train"
    check_sample_rate(src.kind, sample_rate, masks)
    layout = layout or ("tar" if src.kind == "train" else "dir")
    available = set(src.videos())
    workers = workers or available_cpus()
    key_of = partial(video_key, src, layout=layout, sample_rate=sample_rate, jpeg_quality=jpeg_quality, masks=masks)
    plan = plan_shard(src, dest, videos, shard, num_shards, key_of=key_of, workers=workers)
    mine, skipped, todo = plan.mine, plan.skipped, plan.todo
    report = FailureReport("stage", total=len(mine), skipped=len(skipped))
    log.info("stage shard %d of %d: %d videos from %s (%s), %d already complete, %d to redo, %s layout, "
             "sample rate %d", shard, num_shards, len(mine), source, src.kind, len(skipped), len(plan.restage),
             layout, sample_rate)
    if plan.differences:
        log.warning("stage: redoing complete videos %s", provenance.summarize(plan.differences))
    staged: list[str] = []
    frames_written = 0
    scratch_root = Path(tempfile.mkdtemp(prefix="savflow-stage-", dir=scratch))
    stager = stager_for(src, dest, layout=layout, sample_rate=sample_rate, jpeg_quality=jpeg_quality, masks=masks,
                        workers=workers, scratch=scratch_root, restage=plan.restage, key_of=key_of)
    bar = Progress(len(todo), f"stage {shard}-of-{num_shards}", "video", enabled=progress)

    def attempt(video: str, step: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one phase of one video: ``(True, its result)``, or ``(False, None)`` after reporting the failure,
        so that one broken video never stops the shard."""
        try:
            return True, step()
        except VideoFailed as exc:
            report.fail(video, exc.stage, exc.reason)
        except savformat.SavFormatError as exc:
            report.fail(video, "list", str(exc))
        except Exception as exc:  # anything else a bad file can provoke; the report keeps the reason
            log.debug("video %s failed", video, exc_info=True)
            report.fail(video, "stage", f"{type(exc).__name__}: {exc}")
        tick()
        return False, None

    def tick() -> None:
        rate = stager.frames_decoded / max(time.monotonic() - started, 1e-9)
        bar.update(1, note=f"{rate:.1f} frames/s, {len(report.failures)} failed")

    def published(video: str, written: int) -> None:
        nonlocal frames_written
        frames_written += written
        staged.append(video)
        tick()

    def fetch(video: str) -> Fetched | None:
        if video not in available:
            raise VideoFailed("list", f"{source}: no such video")
        return stager.fetch(video)

    try:
        run_overlapped(todo, Phases(fetch=fetch, build=stager.build, publish=stager.publish, discard=stager.discard),
                       attempt=attempt, published=published)
    finally:
        bar.close()
        stager.close()
        shutil.rmtree(scratch_root, ignore_errors=True)
    report.done = len(staged)
    complete = sorted(markers.done_units(dest))
    storage.write_text(storage.join(dest, lay.FILE_LIST), savformat.format_video_list(complete))
    report_uri = storage.join(dest, lay.report_name(shard, num_shards))
    report.write(report_uri)
    redone = {v: plan.differences[v] for v in staged if v in plan.differences}
    result = StageResult(src.kind, layout, shard, num_shards, mine, staged, skipped, redone, list(report.failures),
                         frames_written, stager.frames_decoded, time.monotonic() - started, report_uri,
                         report.exit_code(max_failures))
    log.info("%s", result.summary())
    return result
