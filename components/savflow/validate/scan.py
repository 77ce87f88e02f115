"""The facts about each training video that the checks need, gathered through the storage API.

Two shapes of training data are recognised under ``--train``:

* frames: ``JPEGImages_24fps/{video}/*`` + ``annotations/{video}_manual.json`` (what ``savflow import`` and
  ``savflow stage --layout dir`` write, what ``savflow train`` reads): one listing of the frames, one read per
  annotation and one of each video's first frame (every frame with ``all_frames``), for its size and format;
* mp4: ``{video}.mp4`` + ``{video}_manual.json`` (SA-V train as downloaded, what ``savflow stage`` reads): the
  annotation, and the mp4's header (size, frame count) unless ``probe_videos`` is off; an mp4 in object
  storage is downloaded to a scratch file for that (the container's index may sit at its end).

The videos are those of ``videos`` (the training file list) or, as ``savflow train`` lists them, every
``{video}_manual.json`` (mp4: every video with either file).
"""

from __future__ import annotations

import io
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from savflow.common import savformat, storage

MANUAL = "_manual.json"


class SplitError(ValueError):
    """``--train`` holds no training data this command can read (exit status 2)."""


@dataclass
class VideoFacts:
    """One video as found. ``frame_names``: the files in its frame folder (frames shape; None for an mp4);
    ``frame_sizes``: (height, width) of the frames read (the first one, or all), by name; ``frame_count``: the
    mp4's frames (None when not probed); ``frame_error``: why the frames could not be read."""

    video: str
    kind: Literal["frames", "mp4"]
    annotation_uri: str
    annotation: bytes | None
    frames_uri: str
    frame_names: list[str] | None = None
    frame_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    frame_formats: dict[str, str] = field(default_factory=dict)
    frame_count: int | None = None
    frame_error: str | None = None
    stage_sample_rate: int = 1


@dataclass
class SplitFacts:
    root: str
    kind: Literal["frames", "mp4"]
    videos: list[VideoFacts]


def _image_header(data: bytes) -> tuple[tuple[int, int], str]:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    return (image.height, image.width), str(image.format)


def _frame_facts(facts: VideoFacts, all_frames: bool) -> None:
    names = facts.frame_names or []
    for name in names if all_frames else names[:1]:
        uri = storage.join(facts.frames_uri, name)
        try:
            size, fmt = _image_header(storage.read_bytes(uri))
        except Exception as exc:  # noqa: BLE001 - any unreadable image is a finding, not a crash
            facts.frame_error = f"{uri}: cannot read the image: {exc}"
            return
        facts.frame_sizes[name], facts.frame_formats[name] = size, fmt


def probe_mp4(path: Path) -> tuple[tuple[int, int], int]:
    """(height, width) and frame count of an mp4, from its header and packets (nothing is decoded)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        size = (stream.codec_context.height, stream.codec_context.width)
        count = stream.frames or sum(1 for p in container.demux(stream) if p.size)
    return size, count


def _mp4_facts(facts: VideoFacts, scratch: Path) -> None:
    try:
        if storage.is_gcs(facts.frames_uri):
            local = storage.download_file(facts.frames_uri, scratch / f"{facts.video}.mp4")
        else:
            local = storage.local_path(facts.frames_uri)
        try:
            size, facts.frame_count = probe_mp4(local)
        finally:
            if storage.is_gcs(facts.frames_uri):
                local.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - av, storage or a missing file: all are findings about the video
        facts.frame_error = f"{facts.frames_uri}: cannot read the video: {type(exc).__name__}: {exc}"
        return
    facts.frame_sizes["(video)"] = size


def _read_annotation(uri: str) -> bytes | None:
    try:
        return storage.read_bytes(uri)
    except storage.NotFoundError:
        return None


def scan_split(root: str, videos: list[str] | None = None, *, all_frames: bool = False, probe_videos: bool = True,
               stage_sample_rate: int = 1, workers: int = 16, scratch: str | Path | None = None) -> SplitFacts:
    """The facts of every training video under ``root`` (or of ``videos``)."""
    files, folders = storage.list_children(root)
    if savformat.FRAMES_DIR in folders or savformat.ANNOTATIONS_DIR in folders:
        kind: Literal["frames", "mp4"] = "frames"
        frames: dict[str, list[str]] = {}
        for name in storage.list_prefix(storage.join(root, savformat.FRAMES_DIR)):
            if "/" in name:
                video, rest = name.split("/", 1)
                frames.setdefault(video, []).append(rest)
        listed = storage.list_prefix(storage.join(root, savformat.ANNOTATIONS_DIR), recursive=False)
        annotated = sorted(n[: -len(MANUAL)] for n in listed if n.endswith(MANUAL))
    elif any(n.endswith(".mp4") or n.endswith(MANUAL) for n in files):
        kind = "mp4"
        annotated = sorted({n[: -len(MANUAL)] if n.endswith(MANUAL) else n[: -len(".mp4")] for n in files
                            if n.endswith(MANUAL) or n.endswith(".mp4")})
    elif "_done" in folders:
        raise SplitError(f"{root}: a staged split in the tar layout; validate the raw split it was staged from, or "
                         f"one staged with --layout dir")
    else:
        raise SplitError(f"{root}: no training data (neither {savformat.FRAMES_DIR}/ + {savformat.ANNOTATIONS_DIR}/ "
                         f"nor *.mp4 + *{MANUAL})")
    chosen = videos if videos is not None else annotated
    if kind == "frames":
        facts = [VideoFacts(v, kind, storage.join(root, savformat.annotation_path(v)), None,
                            storage.join(root, savformat.FRAMES_DIR, v), sorted(frames.get(v, [])))
                 for v in chosen]
    else:
        facts = [VideoFacts(v, kind, storage.join(root, f"{v}{MANUAL}"), None, storage.join(root, f"{v}.mp4"),
                            stage_sample_rate=stage_sample_rate) for v in chosen]
    mp4s = {n[: -len(".mp4")] for n in files if n.endswith(".mp4")}

    with tempfile.TemporaryDirectory(prefix="savflow-validate-", dir=scratch) as tmp:
        def gather(f: VideoFacts) -> None:
            f.annotation = _read_annotation(f.annotation_uri)
            if f.kind == "frames":
                _frame_facts(f, all_frames)
            elif f.video not in mp4s:
                f.frame_error = f"{f.frames_uri}: missing"
            elif probe_videos:
                _mp4_facts(f, Path(tmp))

        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="validate") as pool:
            list(pool.map(gather, facts))
    return SplitFacts(root, kind, facts)
