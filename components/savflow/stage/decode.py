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
    reject a wrong count before decoding); ``width``, ``height`` and ``fps`` are known from the first frame on,
    ``declared_frames`` (what the container's index lists, None when it lists none) once the file is open.
    A frame the decoder flags as corrupt (it concealed damaged data), a sampled frame that does not come out, or
    a video without frames stops the iteration with :class:`VideoDecodeError`, since staging it would train on
    garbage. So does a file cut inside a frame (FFmpeg reads fewer bytes than the index says): at once when
    frames are skipped; when every frame is decoded, at the end, unless fewer frames came out than the index
    lists, which the caller's frame count check reports (``truncated_at``: the byte offset of the cut frame).
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
        self.declared_frames: int | None = None
        self.truncated_at: int | None = None
        self._sent: int | None = None  # frame index of the packet last sent to the decoder (sampled path)

    def __iter__(self) -> Iterator[tuple[int, av.VideoFrame]]:
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise VideoDecodeError(self.name, "cannot open: empty file (0 bytes)")
        try:
            container = av.open(str(self.path))
        except av.FFmpegError as exc:
            raise VideoDecodeError(self.name, f"cannot open: {exc}") from exc
        with container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams})
                raise VideoDecodeError(self.name, f"no video stream (streams: {', '.join(kinds) or 'none'})")
            stream = container.streams.video[0]
            self.declared_frames = stream.frames or None
            if stream.codec_context is None:
                raise VideoDecodeError(self.name, "no decoder for the video stream: its codec parameters are "
                                                  "missing (the header is cut short) or the codec is unknown")
            stream.thread_type = "AUTO"
            self.fps = float(stream.average_rate) if stream.average_rate else None
            grid = timestamp_grid(self.path) if self.sample_rate > 1 else None
            self._sent = self.truncated_at = None
            try:
                if grid is None:
                    yield from self._decode_all(container, stream)
                else:
                    yield from self._decode_sampled(container, stream, grid)
            except av.FFmpegError as exc:
                at = self.frame_count if self._sent is None else self._sent
                reason = f"decode failed: {exc}" if self.truncated_at is None else self._cut_short(self.truncated_at)
                raise VideoDecodeError(self.name, reason, frame=at) from exc
            if not self.frame_count:
                raise VideoDecodeError(self.name, f"no video frames{self._truncated()}")
            if self.truncated_at is not None and self.frame_count >= (self.declared_frames or 0):
                raise VideoDecodeError(self.name, self._cut_short(self.truncated_at))
            self.count_final = True

    def _truncated(self) -> str:
        """What the index says, for errors about data missing from the file."""
        if self.declared_frames is None:
            return ""
        return f" (the container's index lists {self.declared_frames} frames: the file is truncated)"

    def _cut_short(self, pos: int | None) -> str:
        return f"incomplete data at byte {pos}: the file ends inside this frame{self._truncated()}"

    def _packets(self, container: av.container.InputContainer, stream: av.VideoStream,
                 grid: dict[int, int] | None = None) -> Iterator[av.Packet]:
        """The stream's packets in decode order. One the file ends inside (FFmpeg flags it corrupt: fewer bytes
        than the index says) stops the iteration when frames are skipped (``grid``), else is recorded."""
        for packet in container.demux(stream):
            if packet.is_corrupt and self.truncated_at is None:
                if grid is not None:
                    raise VideoDecodeError(self.name, self._cut_short(packet.pos), frame=grid.get(packet.pts))
                self.truncated_at = packet.pos
            yield packet

    def _check(self, frame: av.VideoFrame, index: int) -> None:
        if frame.is_corrupt:
            reason = ("corrupt data (the decoder concealed errors)" if self.truncated_at is None
                      else self._cut_short(self.truncated_at))
            raise VideoDecodeError(self.name, reason, frame=index)
        if self.width is None:
            self.width, self.height = frame.width, frame.height

    def _decode_all(self, container: av.container.InputContainer,
                    stream: av.VideoStream) -> Iterator[tuple[int, av.VideoFrame]]:
        for frame in (f for packet in self._packets(container, stream) for f in stream.decode(packet)):
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
            for packet in self._packets(container, stream, grid):
                if packet.size:
                    index = self._sent = grid.get(packet.pts)
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
