"""The videos of one staging run: how a train video (mp4 + manual JSON) and a val/test video (JPEGs + PNGs)
become a staged video, and how it is published (uploaded, then marked complete).

See :mod:`savflow.stage.stage` for what staging produces and :mod:`savflow.common.staged` for the layout.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

from savflow.common import markers, provenance, savformat, storage
from savflow.common import staged as lay
from savflow.stage import writers
from savflow.stage.decode import SampledFrames, VideoDecodeError, encode_jpeg
from savflow.stage.ordered_map import ordered_map
from savflow.stage.raw_split import TrainSource, ValSource

log = logging.getLogger(__name__)

SAV_FPS = 24.0
_JPEG_MAGIC = b"\xff\xd8\xff"


class VideoFailed(Exception):
    """One video cannot be staged; ``stage`` names the step (annotation, fetch, decode, frame-count, ...)."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage, self.reason = stage, reason
        super().__init__(f"{stage}: {reason}")


@dataclass
class Fetched:
    """A train video's inputs on local disk / in memory, ready to decode."""

    annotation: bytes
    ann: savformat.ManualAnnotation
    mp4: Path
    scratch_copy: bool


@dataclass
class Built:
    """A video whose files are all written (tar: in a local archive; dir: uploads under way), checks passed."""

    writer: writers.TarWriter | writers.DirWriter
    payload: dict[str, Any]
    frames_written: int


def read_annotation(uri: str, video: str) -> tuple[bytes, savformat.ManualAnnotation]:
    """The bytes and the parsed ``{video}_manual.json`` at ``uri``; a :class:`VideoFailed` (stage
    ``annotation``) when it cannot be read, is not one, or names another video."""
    try:
        data = storage.read_bytes(uri)
        ann = savformat.parse_manual_json(data, file=uri)
    except (storage.StorageError, savformat.SavFormatError) as exc:
        raise VideoFailed("annotation", str(exc)) from exc
    if ann.video_id != video:
        raise VideoFailed("annotation", f"{uri}: video_id {ann.video_id!r} does not match the file name")
    return data, ann


class VideoStager(abc.ABC):
    """Stages single videos of one source into one destination, in three phases per video so that a shard
    overlaps them (:mod:`savflow.stage.overlap`): ``fetch`` (download inputs) for the next video and
    ``publish`` (upload, then mark complete) for the previous one run in background threads while ``build``
    decodes and encodes the current one. :class:`TrainVideos` and :class:`ValVideos` build the two kinds of
    split; what they share (pools, writers, publication) is here."""

    def __init__(self, source: TrainSource | ValSource, dest: str, *, layout: str, sample_rate: int,
                 jpeg_quality: int, masks: bool, workers: int, scratch: Path, restage: dict[str, dict[str, Any]],
                 key_of: Callable[[str], dict[str, Any]]) -> None:
        self.source, self.dest, self.layout = source, dest, layout
        self.sample_rate, self.jpeg_quality, self.masks = sample_rate, jpeg_quality, masks
        self.restage, self.key_of = restage, key_of
        self.scratch = scratch
        self.cpu = ThreadPoolExecutor(workers, thread_name_prefix="stage-encode")
        self.io_workers = max(8, 4 * workers)
        self.io = ThreadPoolExecutor(self.io_workers, thread_name_prefix="stage-io")
        self.cpu_in_flight = 2 * workers + 2
        self.frames_decoded = 0

    def close(self) -> None:
        self.cpu.shutdown(cancel_futures=True)
        self.io.shutdown(cancel_futures=True)

    def fetch(self, video: str) -> Fetched | None:
        """A video's inputs, fetched ahead of its build (None where there is nothing to fetch); a video made
        differently before is unmarked and its old files deleted first."""
        savformat.check_name(video)
        if video in self.restage:
            self._unstage(video, self.restage[video])
        return self._fetch(video)

    @abc.abstractmethod
    def _fetch(self, video: str) -> Fetched | None:
        """The kind's own inputs of a video."""

    def _unstage(self, video: str, old: dict[str, Any]) -> None:
        """Remove a video staged with another key: its marker first (readers stop trusting it), then the files
        the marker lists, so no file of the old settings (a frame another sample rate kept) survives."""
        try:
            names = ([lay.archive_name(video)] if "archive" in old else
                     [lay.check_member(entry["name"], video) for entry in old.get("files", [])])
            markers.clear_marker(self.dest, video)
            list(self.io.map(lambda name: storage.delete(storage.join(self.dest, name)), names))
        except (storage.StorageError, savformat.SavFormatError, KeyError, TypeError) as exc:
            raise VideoFailed("marker", str(exc)) from exc


    @abc.abstractmethod
    def build(self, video: str, fetched: Fetched | None) -> Built:
        """Write the video's files (to the writer: a local archive, or uploads under way) and check them."""


    def publish(self, video: str, built: Built) -> int:
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
                   "files": built.writer.files, provenance.KEY_FIELD: self.key_of(video),
                   "staged_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            markers.write_marker(self.dest, video, payload)
        except storage.StorageError as exc:
            raise VideoFailed("marker", str(exc)) from exc
        return built.frames_written

    def discard(self, fetched: Fetched | None) -> None:
        """Drop a fetched input that will not be built (the run is stopping)."""
        if fetched is not None and fetched.scratch_copy:
            fetched.mp4.unlink(missing_ok=True)

    def _writer(self, video: str) -> writers.TarWriter | writers.DirWriter:
        if self.layout == "tar":
            return writers.TarWriter(self.dest, video, self.scratch)
        return writers.DirWriter(self.dest, video, self.io, 2 * self.io_workers)


class TrainVideos(VideoStager):
    """A train split: ``{video}.mp4`` + ``{video}_manual.json`` -> every ``sample_rate``-th frame as JPEG, the
    annotation, and (with ``masks``) the per-object PNGs of every annotated frame."""

    def _fetch(self, video: str) -> Fetched:
        annotation, ann = self._read_annotation(video)
        mp4, scratch_copy = self._local_mp4(video)
        return Fetched(annotation, ann, mp4, scratch_copy)

    def build(self, video: str, fetched: Fetched | None) -> Built:
        assert fetched is not None
        try:
            return self._build_train(video, fetched)
        finally:
            if fetched.scratch_copy:
                fetched.mp4.unlink(missing_ok=True)

    def _read_annotation(self, video: str) -> tuple[bytes, savformat.ManualAnnotation]:
        if video not in self.source.annotations:
            raise VideoFailed("annotation", f"{self.source.annotation_uri(video)}: missing")
        return read_annotation(self.source.annotation_uri(video), video)

    def _local_mp4(self, video: str) -> tuple[Path, bool]:
        """The mp4 as a local file, and whether it is a scratch copy to delete afterwards."""
        uri = self.source.mp4_uri(video)
        if video not in self.source.mp4s:
            raise VideoFailed("fetch", f"{uri}: missing")
        if not storage.is_gcs(uri):
            return storage.local_path(uri), False
        try:
            return storage.download_file(uri, self.scratch / f"{video}.mp4"), True
        except storage.StorageError as exc:
            raise VideoFailed("fetch", str(exc)) from exc

    def _build_train(self, video: str, fetched: Fetched) -> Built:
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
        return Built(writer, {"split": "train", "jpeg_quality": quality, "frame_count": frames.frame_count,
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
        truncated = (f" (the mp4's index lists {frames.declared_frames} frames: the file is truncated)"
                     if frames.declared_frames and frames.frame_count < frames.declared_frames else "")
        return VideoFailed("frame-count", f"{mp4_uri}: {count} frames, but {ann_uri} says video_frame_count "
                                          f"{ann.frame_count}{truncated}")

    @staticmethod
    def _check_first_frame(frames: SampledFrames, ann: savformat.ManualAnnotation, mp4_uri: str,
                           ann_uri: str) -> None:
        if (frames.width, frames.height) != (ann.width, ann.height):
            raise VideoFailed("frame-size", f"{mp4_uri}: frames are {frames.width}x{frames.height}, but {ann_uri} "
                                            f"says video_width x video_height {ann.width}x{ann.height}")
        if frames.fps and abs(frames.fps - SAV_FPS) > 0.01:
            log.warning("%s: %.3f fps, not SA-V's %g; frames are numbered in decode order, not resampled",
                        mp4_uri, frames.fps, SAV_FPS)


class ValVideos(VideoStager):
    """A val/test split: its JPEGs and per-object PNGs copied byte for byte (every ``sample_rate``-th frame,
    all masks), after checking that the video's files are consistent. A video with an annotation (an imported
    split, :mod:`savflow.stage.raw_split`) gets it copied too, after the checks the train split's get, and may
    then have no masks (it is training data only)."""

    def _fetch(self, video: str) -> None:
        return None

    def build(self, video: str, fetched: Fetched | None) -> Built:
        return self._build_val(video)

    def _annotation(self, video: str) -> tuple[str, bytes] | None:
        """The video's annotation to copy (None when it has none), checked as a train annotation is, and
        refused when the sample rate would drop annotated frames: sam2 trains only on frames that are both
        annotated and staged."""
        if video not in self.source.annotations:
            return None
        uri = self.source.annotation_uri(video)
        data, ann = read_annotation(uri, video)
        if ann.ann_every % self.sample_rate:
            raise VideoFailed("layout", f"{uri}: annotated every {ann.ann_every} frame(s); sample rate "
                                        f"{self.sample_rate} would drop annotated frames (use a sample rate "
                                        f"that divides {ann.ann_every})")
        return savformat.annotation_path(video), data

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
        if not masks and video not in src.annotations:
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
        """A file to copy, checked without decoding: a JPEG's signature; a mask PNG's chunks (complete, CRCs
        right) and mode (the per-object masks are grey, palette or 1-bit)."""
        uri = storage.join(self.source.root, name)
        data = storage.read_bytes(uri)
        if name.endswith(".jpg"):
            if not data.startswith(_JPEG_MAGIC):
                raise VideoFailed("copy", f"{uri}: not a JPEG file")
            return name, data
        try:
            savformat.check_mask_png(data, file=uri, video=name.split("/")[1])
        except savformat.SavFormatError as exc:
            raise VideoFailed("copy", str(exc)) from exc
        return name, data

    def _build_val(self, video: str) -> Built:
        annotation = self._annotation(video)  # first: its stride explains a sample rate that drops masks
        names = self._val_files(video)
        writer = self._writer(video)
        written = 0
        try:
            if annotation is not None:
                writer.add(*annotation)
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
        return Built(writer, {"split": "val", "frame_count": len(self.source.frames[video]),
                               "frames_written": written, "objects": sorted(self.source.masks.get(video, {})),
                               "masks": video in self.source.masks, "annotation": annotation is not None,
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


def stager_for(source: TrainSource | ValSource, dest: str, **options: Any) -> VideoStager:
    """The stager of ``source``'s kind."""
    return (ValVideos if isinstance(source, ValSource) else TrainVideos)(source, dest, **options)
