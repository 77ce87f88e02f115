"""Streaming video decode for staging: every frame is decoded (H.264 needs its references), but only the
sampled ones are converted to pixels and JPEG-encoded.

The decoder runs FFmpeg's own frame/slice threads; colour conversion (swscale, which releases the GIL) and JPEG
encoding (OpenCV, which releases the GIL too) run in the caller's thread pool through :func:`encode_jpeg`. The
conversion honours the stream's colour tags (BT.709 for HD), giving exactly the pixels ``cv2.VideoCapture``
gives. Nothing holds more than the frames in flight, so memory does not grow with the length of the video.
"""

from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path
from typing import Iterator

import av
import cv2
from av.video.reformatter import VideoReformatter

_local = threading.local()


class VideoDecodeError(RuntimeError):
    """The video cannot be opened or decoded; the message names the file and the frame."""

    def __init__(self, file: str, reason: str, *, frame: int | None = None) -> None:
        self.file, self.frame = file, frame
        where = f"frame {frame}: " if frame is not None else ""
        super().__init__(f"{file}: {where}{reason}")


def timestamp_grid(path: str | Path) -> dict[int, int] | None:
    """``pts -> frame index`` when a video's packet timestamps form one regular grid (constant frame rate, no
    gaps, nothing the container marks for discarding), else None.

    Reading the packets (no decoding) costs a fraction of decoding them; with the grid known, every packet's
    frame index is known before it is decoded, which is what lets :class:`SampledFrames` skip frames.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            stamps = []
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None or packet.is_discard:
                    return None
                stamps.append(packet.pts)
    except av.FFmpegError:
        return None
    stamps.sort()
    step = stamps[1] - stamps[0] if len(stamps) > 1 else 1
    if step <= 0 or any(b - a != step for a, b in pairwise(stamps)):
        return None
    return {pts: (pts - stamps[0]) // step for pts in stamps}


class SampledFrames:
    """Iterate ``(frame_index, frame)`` over every ``sample_rate``-th frame of a video file, in display order.

    With a sample rate above 1 and a regular timestamp grid (:func:`timestamp_grid`; SA-V's constant-rate
    H.264), the decoder is told to drop each non-reference frame that is not sampled (``skip_frame=NONREF``, set
    per packet): such a frame is never needed to decode another, so the sampled frames come out identical while
    much of the decoding is saved (every other frame of a typical IBBBP stream). Otherwise every frame is decoded
    and counted.

    ``frame_count`` is the number of frames in the video seen so far, and the whole count once the iteration
    ends or as soon as ``count_final`` is set (from the start when the grid was read ahead, so a caller can
    reject a wrong count before decoding); ``width``, ``height`` and ``fps`` are known from the first frame on.
    A frame the decoder flags as corrupt (it concealed damaged data), or a sampled frame that does not come out,
    stops the iteration with :class:`VideoDecodeError`, since staging it would train on garbage.
    """

    def __init__(self, path: str | Path, sample_rate: int = 1, *, name: str | None = None) -> None:
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
        self.path = Path(path)
        self.name = name or str(path)
        self.sample_rate = sample_rate
        self.frame_count = 0
        self.count_final = False
        self.width: int | None = None
        self.height: int | None = None
        self.fps: float | None = None

    def __iter__(self) -> Iterator[tuple[int, av.VideoFrame]]:
        try:
            container = av.open(str(self.path))
        except av.FFmpegError as exc:
            raise VideoDecodeError(self.name, f"cannot open: {exc}") from exc
        with container:
            if not container.streams.video:
                raise VideoDecodeError(self.name, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self.fps = float(stream.average_rate) if stream.average_rate else None
            grid = timestamp_grid(self.path) if self.sample_rate > 1 else None
            try:
                if grid is None:
                    yield from self._decode_all(container, stream)
                else:
                    yield from self._decode_sampled(container, stream, grid)
                self.count_final = True
            except av.FFmpegError as exc:
                raise VideoDecodeError(self.name, f"decode failed: {exc}", frame=self.frame_count) from exc

    def _check(self, frame: av.VideoFrame, index: int) -> None:
        if frame.is_corrupt:
            raise VideoDecodeError(self.name, "corrupt data (the decoder concealed errors)", frame=index)
        if self.width is None:
            self.width, self.height = frame.width, frame.height

    def _decode_all(self, container: av.container.InputContainer,
                    stream: av.VideoStream) -> Iterator[tuple[int, av.VideoFrame]]:
        for frame in container.decode(stream):
            index = self.frame_count
            self._check(frame, index)
            self.frame_count += 1
            if index % self.sample_rate == 0:
                yield index, frame

    def _decode_sampled(self, container: av.container.InputContainer, stream: av.VideoStream,
                        grid: dict[int, int]) -> Iterator[tuple[int, av.VideoFrame]]:
        self.frame_count, self.count_final = len(grid), True
        codec = stream.codec_context
        wanted = 0

        def decoded() -> Iterator[av.VideoFrame]:
            for packet in container.demux(stream):
                if packet.size:
                    index = grid.get(packet.pts)
                    if index is None:
                        raise VideoDecodeError(self.name, f"packet with unexpected timestamp {packet.pts}")
                    codec.skip_frame = "DEFAULT" if index % self.sample_rate == 0 else "NONREF"
                yield from stream.decode(packet)

        for frame in decoded():
            index = grid.get(frame.pts)
            if index is None:
                raise VideoDecodeError(self.name, f"decoded frame with unexpected timestamp {frame.pts}")
            if index % self.sample_rate:
                continue
            if index != wanted:
                raise VideoDecodeError(self.name, "missing from the decoder's output", frame=wanted)
            self._check(frame, index)
            wanted += self.sample_rate
            yield index, frame
        if wanted < len(grid):
            raise VideoDecodeError(self.name, "missing from the decoder's output", frame=wanted)


def encode_jpeg(frame: av.VideoFrame, quality: int) -> bytes:
    """Convert one decoded frame to BGR and encode it as JPEG; safe to call from many threads at once."""
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    bgr = reformatter.reformat(frame, format="bgr24").to_ndarray()
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for a {frame.width}x{frame.height} frame")
    return buf.tobytes()
