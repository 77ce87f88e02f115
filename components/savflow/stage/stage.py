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
index, see :mod:`savflow.common.staged`, and recording whether masks were written). A re-run skips marked videos
and redoes the others from scratch, so a killed run costs only the videos in flight; a train run with masks also
redoes the videos marked without them (their marker is removed first, so readers never see a half-replaced
video). A video that cannot be staged (missing or malformed annotation, corrupt or truncated mp4, a frame count
that disagrees with ``video_frame_count``) is recorded in the shard's report and the others go on; the result's
``exit_code`` is non-zero when more than ``max_failures`` failed.

Source mp4s in object storage are downloaded to a local scratch file first: MP4 demuxing seeks (the index may sit
at the end of the file), which a local file does in microseconds and a bucket in one request each, and one
download is a single request. Fetching the next video's inputs and publishing the previous one (upload, marker)
run in background threads while the current one is decoded, so object-store latency hides behind the CPU work.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

from tqdm import tqdm

from savflow.common import markers, savformat, storage
from savflow.common.cpus import available_cpus
from savflow.common.failures import Failure, FailureReport
from savflow.common.lpt_shards import shard_of
from savflow.common import staged as lay
from savflow.stage import writers
from savflow.stage.decode import SampledFrames, VideoDecodeError, encode_jpeg
from savflow.stage.ordered_map import ordered_map
from savflow.stage.raw_split import TrainSource, ValSource, scan_source

log = logging.getLogger(__name__)

SAV_FPS = 24.0
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class VideoFailed(Exception):
    """One video cannot be staged; ``stage`` names the step (annotation, fetch, decode, frame-count, ...)."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage, self.reason = stage, reason
        super().__init__(f"{stage}: {reason}")


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
    failures: list[Failure]
    frames_written: int
    frames_decoded: int
    seconds: float
    report_uri: str
    exit_code: int

    def summary(self) -> str:
        rate = self.frames_decoded / self.seconds if self.seconds > 0 else 0.0
        return (f"stage shard {self.shard} of {self.num_shards} ({self.split}, {self.layout} layout): "
                f"{len(self.videos)} videos: {len(self.staged)} staged, {len(self.skipped)} already complete, "
                f"{len(self.failures)} failed; {self.frames_written} frames written, {self.frames_decoded} read "
                f"in {self.seconds:.1f} s ({rate:.1f} frames/s); report {self.report_uri}")


@dataclass
class _Fetched:
    """A train video's inputs on local disk / in memory, ready to decode."""

    annotation: bytes
    ann: savformat.ManualAnnotation
    mp4: Path
    scratch_copy: bool


@dataclass
class _Built:
    """A video whose files are all written (tar: in a local archive; dir: uploads under way), checks passed."""

    writer: writers.TarWriter | writers.DirWriter
    payload: dict[str, Any]
    frames_written: int


class _Stager:
    """Stages single videos of one source into one destination, in three phases per video so that a shard
    overlaps them: ``fetch`` (download inputs) for the next video and ``publish`` (upload, then mark complete)
    for the previous one run in background threads while ``build`` decodes and encodes the current one."""

    def __init__(self, source: TrainSource | ValSource, dest: str, *, layout: str, sample_rate: int,
                 jpeg_quality: int, masks: bool, workers: int, scratch: Path, restage: set[str]) -> None:
        self.source, self.dest, self.layout = source, dest, layout
        self.sample_rate, self.jpeg_quality, self.masks = sample_rate, jpeg_quality, masks
        self.restage = restage
        self.scratch = scratch
        self.cpu = ThreadPoolExecutor(workers, thread_name_prefix="stage-encode")
        self.io_workers = max(8, 4 * workers)
        self.io = ThreadPoolExecutor(self.io_workers, thread_name_prefix="stage-io")
        self.cpu_in_flight = 2 * workers + 2
        self.frames_decoded = 0

    def close(self) -> None:
        self.cpu.shutdown(cancel_futures=True)
        self.io.shutdown(cancel_futures=True)

    def fetch(self, video: str) -> _Fetched | None:
        """Inputs of a train video (None for val/test, whose files are read while building)."""
        savformat.check_name(video)
        if isinstance(self.source, ValSource):
            return None
        if video in self.restage:
            try:
                markers.clear_marker(self.dest, video)
            except storage.StorageError as exc:
                raise VideoFailed("marker", str(exc)) from exc
        annotation, ann = self._read_annotation(video)
        mp4, scratch_copy = self._local_mp4(video)
        return _Fetched(annotation, ann, mp4, scratch_copy)

    def build(self, video: str, fetched: _Fetched | None) -> _Built:
        if fetched is None:
            return self._build_val(video)
        try:
            return self._build_train(video, fetched)
        finally:
            if fetched.scratch_copy:
                fetched.mp4.unlink(missing_ok=True)

    def publish(self, video: str, built: _Built) -> int:
        """Upload what is left and write the completion marker; returns the frames written."""
        try:
            extra = built.writer.finish()
        except storage.StorageError as exc:
            built.writer.abort()
            raise VideoFailed("upload", str(exc)) from exc
        except BaseException:
            built.writer.abort()
            raise
        payload = {**built.payload, **extra, "video": video, "layout": self.layout, "sample_rate": self.sample_rate,
                   "files": built.writer.files, "staged_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            markers.write_marker(self.dest, video, payload)
        except storage.StorageError as exc:
            raise VideoFailed("marker", str(exc)) from exc
        return built.frames_written

    def discard(self, fetched: _Fetched | None) -> None:
        """Drop a fetched input that will not be built (the run is stopping)."""
        if fetched is not None and fetched.scratch_copy:
            fetched.mp4.unlink(missing_ok=True)

    def _writer(self, video: str) -> writers.TarWriter | writers.DirWriter:
        if self.layout == "tar":
            return writers.TarWriter(self.dest, video, self.scratch)
        return writers.DirWriter(self.dest, video, self.io, 2 * self.io_workers)

    # train: mp4 + manual.json -> JPEGs + annotation

    def _read_annotation(self, video: str) -> tuple[bytes, savformat.ManualAnnotation]:
        uri = self.source.annotation_uri(video)
        if video not in self.source.annotations:
            raise VideoFailed("annotation", f"{uri}: missing")
        try:
            data = storage.read_bytes(uri)
            ann = savformat.parse_manual_json(data, file=uri)
        except (storage.StorageError, savformat.SavFormatError) as exc:
            raise VideoFailed("annotation", str(exc)) from exc
        if ann.video_id != video:
            raise VideoFailed("annotation", f"{uri}: video_id {ann.video_id!r} does not match the file name")
        return data, ann

    def _local_mp4(self, video: str) -> tuple[Path, bool]:
        """The mp4 as a local file, and whether it is a scratch copy to delete afterwards."""
        uri = self.source.mp4_uri(video)
        if video not in self.source.mp4_sizes:
            raise VideoFailed("fetch", f"{uri}: missing")
        if not storage.is_gcs(uri):
            return storage.local_path(uri), False
        try:
            return storage.download_file(uri, self.scratch / f"{video}.mp4"), True
        except storage.StorageError as exc:
            raise VideoFailed("fetch", str(exc)) from exc

    def _build_train(self, video: str, fetched: _Fetched) -> _Built:
        ann = fetched.ann
        mp4_uri, ann_uri = self.source.mp4_uri(video), self.source.annotation_uri(video)
        frames = SampledFrames(fetched.mp4, self.sample_rate, name=mp4_uri)
        writer = self._writer(video)
        written = 0
        quality = self.jpeg_quality
        try:
            writer.add(savformat.annotation_path(video), fetched.annotation)
            encoded = ordered_map(self.cpu, lambda item: (item[0], encode_jpeg(item[1], quality)), frames,
                                  self.cpu_in_flight)
            try:
                for index, jpeg in encoded:
                    if written == 0:
                        self._check_first_frame(frames, ann, mp4_uri, ann_uri)
                    if frames.frame_count > ann.frame_count or (frames.count_final and
                                                                 frames.frame_count != ann.frame_count):
                        raise self._count_mismatch(frames, ann, mp4_uri, ann_uri)
                    writer.add(savformat.frames_path(video, index), jpeg)
                    written += 1
            except VideoDecodeError as exc:
                raise VideoFailed("decode", str(exc)) from exc
            except storage.StorageError as exc:
                raise VideoFailed("upload", str(exc)) from exc
            finally:
                encoded.close()
                self.frames_decoded += frames.frame_count
            if frames.frame_count != ann.frame_count:
                raise self._count_mismatch(frames, ann, mp4_uri, ann_uri)
            if self.masks:
                self._add_masks(writer, ann, ann_uri)
        except BaseException:
            writer.abort()
            raise
        return _Built(writer, {"split": "train", "jpeg_quality": quality, "frame_count": frames.frame_count,
                               "frames_written": written, "width": frames.width, "height": frames.height,
                               "fps": frames.fps, "source": mp4_uri, "masks": self.masks,
                               "objects": sorted(ann.masklet_ids)}, written)

    def _add_masks(self, writer: writers.TarWriter | writers.DirWriter, ann: savformat.ManualAnnotation,
                   ann_uri: str) -> None:
        """Write the per-object PNGs of every annotated frame, objects encoded in parallel."""
        pngs = ordered_map(self.cpu, partial(_object_pngs, ann, ann_uri), range(ann.num_objects),
                           self.cpu_in_flight)
        try:
            for files in pngs:
                for name, data in files:
                    writer.add(name, data)
        except storage.StorageError as exc:
            raise VideoFailed("upload", str(exc)) from exc
        finally:
            pngs.close()

    @staticmethod
    def _count_mismatch(frames: SampledFrames, ann: savformat.ManualAnnotation, mp4_uri: str,
                        ann_uri: str) -> VideoFailed:
        count = f"{frames.frame_count}" if frames.count_final else f"more than {ann.frame_count}"
        return VideoFailed("frame-count", f"{mp4_uri}: {count} frames, but {ann_uri} says video_frame_count "
                                          f"{ann.frame_count}")

    @staticmethod
    def _check_first_frame(frames: SampledFrames, ann: savformat.ManualAnnotation, mp4_uri: str,
                           ann_uri: str) -> None:
        if (frames.width, frames.height) != (ann.width, ann.height):
            raise VideoFailed("frame-size", f"{mp4_uri}: frames are {frames.width}x{frames.height}, but {ann_uri} "
                                            f"says video_width x video_height {ann.width}x{ann.height}")
        if frames.fps and abs(frames.fps - SAV_FPS) > 0.01:
            log.warning("%s: %.3f fps, not SA-V's %g; frames are numbered in decode order, not resampled",
                        mp4_uri, frames.fps, SAV_FPS)

    # val/test: JPEGs + per-object PNGs, copied

    def _val_files(self, video: str) -> list[str]:
        """The relative paths to copy, after checking that the video's files are consistent."""
        src = self.source
        frames_root = storage.join(src.root, savformat.FRAMES_DIR, video)
        if video in src.problems:
            raise VideoFailed("layout", src.problems[video])
        frames = src.frames.get(video, [])
        masks = src.masks.get(video, {})
        if not frames:
            raise VideoFailed("layout", f"{frames_root}: no frames")
        if not masks:
            raise VideoFailed("layout", f"{storage.join(src.root, savformat.MASKS_DIR, video)}: no masks")
        if frames != list(range(len(frames))):
            gap = next(i for i, f in enumerate(frames) if f != i)
            raise VideoFailed("frame-count", f"{frames_root}: {len(frames)} frames, but frame {gap:05d} is missing")
        for obj, obj_frames in sorted(masks.items()):
            for f in obj_frames:
                where = storage.join(src.root, savformat.object_mask_path(video, obj, f))
                if f >= len(frames):
                    raise VideoFailed("frame-count", f"{where}: a mask for frame {f}, past the last frame "
                                                     f"{len(frames) - 1}")
                if f % self.sample_rate:
                    raise VideoFailed("layout", f"{where}: a mask on a frame that sample rate "
                                                f"{self.sample_rate} does not keep")
        names = [savformat.frames_path(video, f) for f in frames if f % self.sample_rate == 0]
        names += [savformat.object_mask_path(video, obj, f) for obj in sorted(masks) for f in masks[obj]]
        return names

    def _read_checked(self, name: str) -> tuple[str, bytes]:
        uri = storage.join(self.source.root, name)
        data = storage.read_bytes(uri)
        magic = _JPEG_MAGIC if name.endswith(".jpg") else _PNG_MAGIC
        if not data.startswith(magic):
            raise VideoFailed("copy", f"{uri}: not a {'JPEG' if magic is _JPEG_MAGIC else 'PNG'} file")
        return name, data

    def _build_val(self, video: str) -> _Built:
        names = self._val_files(video)
        writer = self._writer(video)
        written = 0
        try:
            copied = ordered_map(self.io, self._read_checked, names, 2 * self.io_workers)
            try:
                for name, data in copied:
                    writer.add(name, data)
                    written += name.endswith(".jpg")
            except storage.StorageError as exc:
                raise VideoFailed("copy", str(exc)) from exc
            finally:
                copied.close()
        except BaseException:
            writer.abort()
            raise
        self.frames_decoded += written
        return _Built(writer, {"split": "val", "frame_count": len(self.source.frames[video]),
                               "frames_written": written, "objects": sorted(self.source.masks[video]),
                               "masks": True,
                               "source": storage.join(self.source.root, savformat.FRAMES_DIR, video)}, written)


def _object_pngs(ann: savformat.ManualAnnotation, ann_uri: str, index: int) -> list[tuple[str, bytes]]:
    """The PNGs of the ``index``-th object: :func:`savflow.common.savformat.manual_to_object_pngs` of the annotation
    cut down to that object (frame numbers unchanged), so that objects are encoded in parallel."""
    obj = ann.masklet_ids[index]
    one = dataclasses.replace(ann, masklet=[[objs[index]] for objs in ann.masklet], masklet_ids=[obj],
                              size_buckets=None)
    try:
        return list(savformat.manual_to_object_pngs(one))
    except ValueError as exc:  # a COCO RLE whose counts pycocotools cannot decode
        raise VideoFailed("masks", f"{ann_uri}: masklet, object {obj}: {exc}") from exc


def _marked_without_masks(dest: str, videos: list[str], workers: int) -> set[str]:
    """The complete videos whose marker does not say masks were written (staged without them, or before the
    option existed); a marker gone since the listing counts too, so the video is staged again."""
    if not videos:
        return set()
    with ThreadPoolExecutor(workers, thread_name_prefix="stage-markers") as pool:
        found = list(pool.map(partial(markers.read_marker, dest), videos))
    return {v for v, marker in zip(videos, found) if not (marker or {}).get("masks")}


def _fetch_listed(stager: _Stager, available: set[str], source: str, video: str) -> _Fetched | None:
    if video not in available:
        raise VideoFailed("list", f"{source}: no such video")
    return stager.fetch(video)


def _check_args(shard: int, num_shards: int, sample_rate: int, jpeg_quality: int, layout: str | None,
                max_failures: int) -> None:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..num_shards-1, got shard {shard} of {num_shards}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if layout is not None and layout not in lay.LAYOUTS:
        raise ValueError(f"layout must be one of {lay.LAYOUTS}, got {layout!r}")
    if max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {max_failures}")


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
    manual annotation (val/test always have them); needs a ``sample_rate`` that keeps the annotated frames, and
    redoes the videos of this shard that were staged without masks.
    Writes ``{dest}/_reports/stage-shard-{K}-of-{N}.json`` and ``{dest}/file_list.txt`` (every complete video).
    """
    _check_args(shard, num_shards, sample_rate, jpeg_quality, layout, max_failures)
    started = time.monotonic()
    src = scan_source(source)
    masks = masks and src.kind == "train"
    if (src.kind == "val" or masks) and savformat.ANN_EVERY % sample_rate:
        what = "of a val/test split" if src.kind == "val" else "that masks are written for"
        raise ValueError(f"sample_rate {sample_rate} would drop annotated frames {what} (masks are on every "
                         f"{savformat.ANN_EVERY}th frame); use a divisor of {savformat.ANN_EVERY}")
    layout = layout or ("tar" if src.kind == "train" else "dir")
    available = set(src.videos())
    wanted = list(dict.fromkeys(videos)) if videos is not None else src.videos()
    weights = src.weights()
    mine = shard_of({v: weights.get(v, 0.0) for v in wanted}, shard, num_shards)
    workers = workers or available_cpus()
    done = markers.done_units(dest)
    restage = _marked_without_masks(dest, [v for v in mine if v in done], max(8, 4 * workers)) if masks else set()
    skipped = [v for v in mine if v in done and v not in restage]
    todo = [v for v in mine if v not in done or v in restage]
    report = FailureReport("stage", total=len(mine), skipped=len(skipped))
    log.info("stage shard %d of %d: %d videos from %s (%s), %d already complete, %d to redo with masks, %s layout, "
             "sample rate %d", shard, num_shards, len(mine), source, src.kind, len(skipped), len(restage), layout,
             sample_rate)
    staged: list[str] = []
    frames_written = 0
    scratch_root = Path(tempfile.mkdtemp(prefix="savflow-stage-", dir=scratch))
    stager = _Stager(src, dest, layout=layout, sample_rate=sample_rate, jpeg_quality=jpeg_quality, masks=masks,
                     workers=workers, scratch=scratch_root, restage=restage)
    bar = tqdm(total=len(todo), desc=f"stage {shard}-of-{num_shards}", unit="video", disable=not progress,
               mininterval=0.5 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)

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
        bar.update(1)
        rate = stager.frames_decoded / max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"{rate:.1f} frames/s, {len(report.failures)} failed")

    def settle(video: str, publishing: Future) -> None:
        nonlocal frames_written
        ok, written = attempt(video, publishing.result)
        if ok:
            frames_written += written
            staged.append(video)
            tick()

    pipe = ThreadPoolExecutor(2, thread_name_prefix="stage-pipeline")
    fetching: Future | None = None
    publishing: tuple[str, Future] | None = None
    try:
        for i, video in enumerate(todo):
            if fetching is None:
                fetching = pipe.submit(_fetch_listed, stager, available, source, video)
            current, fetching = fetching, None
            if i + 1 < len(todo):
                fetching = pipe.submit(_fetch_listed, stager, available, source, todo[i + 1])
            ok, fetched = attempt(video, current.result)
            if not ok:
                continue
            ok, built = attempt(video, partial(stager.build, video, fetched))
            if not ok:
                continue
            if publishing is not None:
                settle(*publishing)
            publishing = (video, pipe.submit(stager.publish, video, built))
        if publishing is not None:
            settle(*publishing)
    finally:
        if fetching is not None:
            fetching.cancel()
            if not fetching.cancelled() and fetching.exception() is None:
                stager.discard(fetching.result())
        pipe.shutdown(wait=True)
        bar.close()
        stager.close()
        shutil.rmtree(scratch_root, ignore_errors=True)
    report.done = len(staged)
    complete = sorted(markers.done_units(dest))
    storage.write_text(storage.join(dest, lay.FILE_LIST), savformat.format_video_list(complete))
    report_uri = storage.join(dest, lay.report_name(shard, num_shards))
    report.write(report_uri)
    result = StageResult(src.kind, layout, shard, num_shards, mine, staged, skipped, list(report.failures),
                         frames_written, stager.frames_decoded, time.monotonic() - started, report_uri,
                         report.exit_code(max_failures))
    log.info("%s", result.summary())
    return result
