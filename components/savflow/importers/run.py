"""Import a whole dataset: read every video's listing, settle the dataset's annotation stride, write the videos
in parallel, then the file list and the record (:data:`savflow.importers.layout.RECORD`).

A video that cannot be imported (a mask at another size than its frames, a mask without a frame, an unreadable
file) is reported by file, video and field, its partial output removed, and the others go on; the exit status is
then 1. A source this format cannot read at all, or bad options, raise (the CLI's exit status 2).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from savflow.common import savformat, storage
from savflow.common.cpus import available_cpus
from savflow.importers import layout
from savflow.importers.davis import DavisReader
from savflow.importers.frames_masks import FramesMasksReader
from savflow.importers.sav_val import SavValReader
from savflow.importers.source import Reader, SourceError, SourceVideo, dataset_stride
from savflow.importers.writer import WriteOptions, Written, clear_video, write_video
from savflow.importers.ytvos import YtvosReader

log = logging.getLogger(__name__)

READERS: dict[str, Callable[..., Reader]] = {"davis": DavisReader, "ytvos": YtvosReader, "sav-val": SavValReader,
                                             "frames+masks": FramesMasksReader}
FORMATS = tuple(READERS)


@dataclass(frozen=True)
class Problem:
    """Why one video was not imported."""

    video: str
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.video}: {self.field}: {self.message} ({self.file})"


@dataclass
class ImportResult:
    format: str
    source: str
    dest: str
    ann_every: int
    fps: float
    written: list[Written]
    problems: list[Problem]
    record_uri: str
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    @property
    def overrides(self) -> list[str]:
        return layout.train_overrides(self.ann_every, self.fps)

    def summary(self) -> str:
        frames = sum(w.frames for w in self.written)
        lines = [f"import ({self.format}): {len(self.written)} videos imported, {len(self.problems)} failed; "
                 f"{frames} frames at {self.fps:g} fps, annotated every {self.ann_every} frame(s), in "
                 f"{self.seconds:.1f} s; record {self.record_uri}"]
        reencoded = sum(w.reencoded for w in self.written)
        if reencoded:
            lines.append(f"  {reencoded} frames were not JPEG and were encoded as JPEG")
        lines += [f"  warning: {w.video}: {text}" for w in self.written for text in w.warnings]
        paths = savformat.split_paths(self.dest)
        lines += [f"  validate: savflow validate --train {self.dest} --config CONFIG "
                  f"{' '.join('--override ' + o for o in self.overrides)}",
                  f"  train:    savflow train --train-frames {paths.frames} --train-annotations {paths.annotations} "
                  f"--file-list {storage.join(self.dest, layout.FILE_LIST)} --override {' '.join(self.overrides)} ...",
                  f"  evaluate: savflow infer --frames {paths.frames} --masks {paths.masks} ... "
                  f"(or savflow stage --source {self.dest})"]
        return "\n".join(lines)


def open_reader(fmt: str, source: str, *, fps: float | None = None, resolution: str | None = None) -> Reader:
    if fmt not in READERS:
        raise SourceError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    return READERS[fmt](source, fps=fps, resolution=resolution)


def check_options(*, fps: float | None, ann_every: int | None, jpeg_quality: int) -> None:
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if ann_every is not None and ann_every < 1:
        raise ValueError(f"ann_every must be >= 1, got {ann_every}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")


def _problem(video: str, exc: Exception) -> Problem:
    if isinstance(exc, savformat.SavFormatError):
        text = str(exc).rsplit(f": field {exc.field}: ", 1)[-1]
        return Problem(video, exc.file, exc.field, text)
    return Problem(video, "?", "(write)", f"{type(exc).__name__}: {exc}")


def import_dataset(fmt: str, source: str, dest: str, *, videos: list[str] | None = None, fps: float | None = None,
                   ann_every: int | None = None, val: bool = True, mp4: bool = False, jpeg_quality: int = 95,
                   workers: int | None = None, resolution: str | None = None,
                   scratch: str | Path | None = None) -> ImportResult:
    """Import the videos of ``source`` (all, or those of ``videos``) in format ``fmt`` into ``dest``.

    ``fps`` is the frame rate of the source frames (default: the format's); ``ann_every`` forces a stride (default:
    the largest one every video's annotated frames sit on). ``val`` writes the val layout too; ``mp4`` also the
    raw SA-V train split ``stage`` reads, which holds SA-V's 4-frame stride or a wider one only."""
    check_options(fps=fps, ann_every=ann_every, jpeg_quality=jpeg_quality)
    started = time.monotonic()
    reader = open_reader(fmt, source, fps=fps, resolution=resolution)
    names = savformat.subset_videos(reader.videos(), videos, file="video list")
    if not names:
        raise SourceError(f"{source}: no videos found for format {fmt}")
    found: dict[str, SourceVideo] = {}
    problems: list[Problem] = []
    for name in names:
        try:
            found[name] = reader.video(name)
        except savformat.SavFormatError as exc:
            problems.append(_problem(name, exc))
    stride = ann_every or dataset_stride(found.values())
    if mp4 and stride < savformat.ANN_EVERY:
        raise ValueError(f"--mp4: `savflow stage` reads annotations on every {savformat.ANN_EVERY}th frame of an "
                         f"mp4 only, and this dataset is annotated every {stride} frame(s); leave out --mp4 and train "
                         f"on {dest} directly (its JPEGImages_24fps + annotations)")
    opts = WriteOptions(dest, stride, val=val, mp4=mp4, jpeg_quality=jpeg_quality,
                        scratch=Path(scratch) if scratch else None)

    done = iter(range(1, len(found) + 1))  # next() on a shared iterator is atomic under the GIL

    def one(src: SourceVideo) -> Written | Problem:
        try:
            written = write_video(src, opts)
            log.info("import: %s: %d frames, %d annotated, %d objects (%d of %d)", src.video, written.frames,
                     written.annotated, len(written.objects), next(done), len(found))
            return written
        except (savformat.SavFormatError, storage.StorageError, OSError, ValueError, RuntimeError) as exc:
            log.debug("video %s failed", src.video, exc_info=True)
            try:
                clear_video(src.video, opts.dest)
            except storage.StorageError:
                log.warning("video %s: could not remove its partial output", src.video)
            return _problem(src.video, exc)

    with ThreadPoolExecutor(workers or available_cpus(), thread_name_prefix="import") as pool:
        results = list(pool.map(one, found.values()))
    written = [r for r in results if isinstance(r, Written)]
    problems += [r for r in results if isinstance(r, Problem)]
    problems.sort(key=lambda p: p.video)
    rates = Counter(w.fps for w in written)
    dataset_fps = rates.most_common(1)[0][0] if rates else (fps or 0.0)
    storage.write_text(storage.join(dest, layout.FILE_LIST), savformat.format_video_list(_imported(dest)))
    record_uri = storage.join(dest, layout.RECORD)
    result = ImportResult(fmt, source, dest, stride, dataset_fps, written, problems, record_uri,
                          time.monotonic() - started)
    storage.write_text(record_uri, json.dumps(_record(result, val=val, mp4=mp4, rates=rates), indent=2))
    return result


def _imported(dest: str) -> list[str]:
    """Every video whose annotation is under ``dest`` (earlier imports into the same root included)."""
    suffix = "_manual.json"
    names = storage.list_prefix(storage.join(dest, savformat.ANNOTATIONS_DIR), recursive=False)
    return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))


def _record(result: ImportResult, *, val: bool, mp4: bool, rates: Counter) -> dict:
    paths = savformat.split_paths(result.dest)
    return {
        "format": result.format, "source": result.source, "fps": result.fps, "ann_every": result.ann_every,
        "fps_by_video": {w.video: w.fps for w in result.written} if len(rates) > 1 else None,
        "videos": sorted(w.video for w in result.written),
        "failed": [asdict(p) for p in result.problems],
        "train": {"frames": paths.frames, "annotations": paths.annotations,
                  "file_list": storage.join(result.dest, layout.FILE_LIST), "overrides": result.overrides},
        "val": {"frames": paths.frames, "masks": paths.masks} if val else None,
        "raw_train_mp4": storage.join(result.dest, layout.MP4_DIR) if mp4 else None,
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
