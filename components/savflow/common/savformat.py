"""SA-V file formats: train ``*_manual.json``, the val/test per-object PNG layout, DAVIS palette PNGs.

Pure functions over bytes and arrays; the callers do I/O through :mod:`savflow.common.storage`.

Layouts, relative to a split root::

    JPEGImages_24fps/{video}/{frame:05d}.jpg          every frame of the 24 fps video (or every S-th)
    Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png  SA-V val/test: one binary PNG per object and frame
    Annotations_6fps/{video}/{frame:05d}.png           DAVIS style: one palette PNG per frame, value = obj id + 1
    annotations/{video}_manual.json                    SA-V train annotation (what sam2's JSONRawDataset reads)

A ``*_manual.json`` holds ``masklet``: one list per annotated frame (every ``ANN_EVERY``-th frame of the 24 fps
video) of per-object COCO RLE dicts, or ``null`` where the object is absent. A file written by ``savflow import``
says its own stride (``ann_every``, :data:`STRIDE_KEY`: DAVIS is annotated on every frame); the reader honours
it, so that stage, evaluate and the mask writers put entry i on frame ``i * ann_every``, not ``i * 4``.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

# numpy, like PIL and pycocotools, is imported in the functions that make arrays: the layout, name and list
# helpers here are imported by every `savflow` command, which must start without it (tests/unit/test_cli_imports.py).
if TYPE_CHECKING:
    import numpy as np

ANN_EVERY = 4
STRIDE_KEY = "ann_every"
FRAMES_DIR = "JPEGImages_24fps"
MASKS_DIR = "Annotations_6fps"
ANNOTATIONS_DIR = "annotations"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IHDR = struct.Struct(">IIBBBBB")


class SavFormatError(ValueError):
    """Bad SA-V input; names the file, the video and the field at fault."""

    def __init__(self, message: str, *, file: str = "?", video: str = "?", field: str = "?") -> None:
        self.file, self.video, self.field = file, video, field
        super().__init__(f"{file}: video {video}: field {field}: {message}")


def check_name(name: str, *, what: str = "video id", file: str = "?", video: str = "?") -> str:
    """Return ``name`` if it is a plain file name (no ``/``, ``..``, absolute path), else raise."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise SavFormatError(f"{what} {name!r} is not a plain name", file=file, video=video, field=what)
    return name


def frames_path(video: str, frame: int) -> str:
    return f"{FRAMES_DIR}/{check_name(video)}/{frame:05d}.jpg"


def object_mask_path(video: str, obj: int, frame: int) -> str:
    return f"{MASKS_DIR}/{check_name(video)}/{obj:03d}/{frame:05d}.png"


def palette_mask_path(video: str, frame: int) -> str:
    return f"{MASKS_DIR}/{check_name(video)}/{frame:05d}.png"


def annotation_path(video: str) -> str:
    return f"{ANNOTATIONS_DIR}/{check_name(video)}_manual.json"


@dataclass(frozen=True)
class SplitPaths:
    """The folders of a staged (or raw val/test) split root that the steps take as separate arguments."""

    frames: str
    masks: str
    annotations: str


def split_paths(root: Any) -> SplitPaths:
    """``{root}/JPEGImages_24fps`` etc. Plain string joining, so that it also works on a KFP pipeline parameter
    (whose value is a placeholder until the run) as well as on a URI."""
    root = str(root).rstrip("/")
    return SplitPaths(f"{root}/{FRAMES_DIR}", f"{root}/{MASKS_DIR}", f"{root}/{ANNOTATIONS_DIR}")


@dataclass(frozen=True)
class ManualAnnotation:
    """A validated SA-V ``*_manual.json``."""

    video_id: str
    frame_count: int
    height: int
    width: int
    masklet: list[list[dict | None]]
    masklet_ids: list[int]
    size_buckets: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    ann_every: int = ANN_EVERY

    @property
    def num_objects(self) -> int:
        return len(self.masklet_ids)

    @property
    def annotated_frames(self) -> list[int]:
        """Frame index of each entry of ``masklet`` (every ``ann_every``-th frame)."""
        return [i * self.ann_every for i in range(len(self.masklet))]


def recorded_stride(doc: Any) -> int | None:
    """The annotation stride a ``*_manual.json`` says it was written with (``savflow import`` records it), or
    None (SA-V's own files do not say; they are annotated every 4th frame)."""
    value = doc.get(STRIDE_KEY) if isinstance(doc, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _int_field(data: dict, key: str, file: str, video: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value <= 0 \
            or int(value) != value:
        raise SavFormatError(f"must be a positive whole number, got {value!r}", file=file, video=video, field=key)
    return int(value)


def parse_manual_json(data: bytes | str | dict, *, file: str = "?") -> ManualAnnotation:
    """Parse and validate a train ``*_manual.json`` (bytes, text or an already-loaded dict), read at the stride
    it records (:func:`recorded_stride`), else SA-V's ``ANN_EVERY``."""
    if not isinstance(data, (bytes, str)):
        doc = data
    else:
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SavFormatError(f"malformed JSON: {exc}", file=file, field="(document)") from exc
    if not isinstance(doc, dict):
        raise SavFormatError("top level must be an object", file=file, field="(document)")
    video = doc.get("video_id")
    if video is None:
        raise SavFormatError("missing", file=file, field="video_id")
    check_name(video, file=file, video=str(video), what="video_id")
    frame_count = _int_field(doc, "video_frame_count", file, video)
    height = _int_field(doc, "video_height", file, video)
    width = _int_field(doc, "video_width", file, video)
    masklet = doc.get("masklet")
    if not isinstance(masklet, list) or not masklet:
        raise SavFormatError("must be a non-empty list of frames", file=file, video=video, field="masklet")
    stride = recorded_stride(doc) or ANN_EVERY
    expected_frames = math.ceil(frame_count / stride)
    if len(masklet) > expected_frames:
        raise SavFormatError(
            f"{len(masklet)} annotated frames, but a {frame_count}-frame video annotated every {stride} frame(s) "
            f"has at most {expected_frames}", file=file, video=video, field="masklet")
    num_objects = doc.get("masklet_num", len(masklet[0]) if isinstance(masklet[0], list) else None)
    if not isinstance(num_objects, int) or num_objects < 0:
        raise SavFormatError(f"bad object count {num_objects!r}", file=file, video=video, field="masklet_num")
    _check_masklet(masklet, num_objects, height, width, file=file, video=video)
    ids = doc.get("masklet_id", list(range(num_objects)))
    if not isinstance(ids, list) or len(ids) != num_objects:
        raise SavFormatError(f"must list {num_objects} ids", file=file, video=video, field="masklet_id")
    for obj_id in ids:
        if isinstance(obj_id, bool) or not isinstance(obj_id, int) or not 0 <= obj_id <= 999:
            raise SavFormatError(f"object id {obj_id!r} is not a whole number in 0..999", file=file, video=video,
                                 field="masklet_id")
    if len(set(ids)) != len(ids):
        raise SavFormatError("object ids repeat", file=file, video=video, field="masklet_id")
    buckets = doc.get("masklet_size_bucket")
    if buckets is not None and (not isinstance(buckets, list) or len(buckets) != num_objects):
        raise SavFormatError(f"must list {num_objects} buckets", file=file, video=video,
                             field="masklet_size_bucket")
    return ManualAnnotation(video, frame_count, height, width, masklet, list(ids), buckets, doc, stride)


def _check_masklet(masklet: list, num_objects: int, height: int, width: int, *, file: str, video: str) -> None:
    """Every frame of ``masklet`` lists ``num_objects`` masks, each None or a COCO RLE of the frame's size that
    covers it; raises for the first that does not. Compressed strings, nearly all of a file, are checked all at
    once (:func:`savflow.common.coco_rle.compressed_problems`) after the rest."""
    from savflow.common.coco_rle import compressed_problems

    strings: list[tuple[str, str]] = []  # (field, counts) of the compressed RLEs before the first other fault
    fault: SavFormatError | None = None
    try:
        for i, frame in enumerate(masklet):
            where = f"masklet[{i}]"
            if not isinstance(frame, list):
                raise SavFormatError("must be a list of objects", file=file, video=video, field=where)
            if len(frame) != num_objects:
                raise SavFormatError(f"{len(frame)} objects, expected {num_objects}", file=file, video=video,
                                     field=where)
            for j, rle in enumerate(frame):
                if rle is not None:
                    counts = _rle_counts(rle, height, width, file=file, video=video, where=f"{where}[{j}]")
                    if counts is not None:
                        strings.append((f"{where}[{j}].counts", counts))
    except SavFormatError as exc:
        fault = exc
    problems = compressed_problems([counts for _, counts in strings], height, width) if strings else []
    for (where, _), problem in zip(strings, problems):
        if problem:
            raise SavFormatError(f"counts {problem}", file=file, video=video, field=where)
    if fault is not None:
        raise fault


def _rle_counts(rle: Any, height: int, width: int, *, file: str, video: str, where: str) -> str | None:
    """Check a COCO RLE's form and size, and an uncompressed one's counts; return a compressed one's string."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise SavFormatError("must be a COCO RLE dict with size and counts", file=file, video=video, field=where)
    size = rle["size"]
    if not isinstance(size, list) or size != [height, width] or any(isinstance(v, bool) for v in size):
        raise SavFormatError(f"RLE size {size!r} does not match the video's [height, width] "
                             f"[{height}, {width}]", file=file, video=video, field=f"{where}.size")
    counts = rle["counts"]
    if isinstance(counts, str):
        return counts
    if not isinstance(counts, list):
        raise SavFormatError("counts must be a string or a list", file=file, video=video, field=f"{where}.counts")
    problem = None
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        problem = "must list whole numbers"
    elif any(c < 0 for c in counts):
        problem = "has a negative run length"
    elif sum(counts) != height * width:
        problem = f"runs cover {sum(counts)} pixels, not the frame's {height} x {width} = {height * width}"
    if problem:
        raise SavFormatError(f"counts {problem}", file=file, video=video, field=f"{where}.counts")
    return None


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (compressed or uncompressed counts) -> ``(H, W)`` bool mask."""
    from pycocotools import mask as mask_utils

    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def encode_rle(mask: np.ndarray) -> dict:
    """``(H, W)`` mask -> compressed COCO RLE with ``counts`` as text (as in SA-V JSON)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def iter_object_masks(ann: ManualAnnotation) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(frame, obj_id, mask)`` for every present object in every annotated frame, frame-major."""
    for frame, objs in zip(ann.annotated_frames, ann.masklet):
        for obj_id, rle in zip(ann.masklet_ids, objs):
            if rle is not None:
                yield frame, obj_id, decode_rle(rle)


def manual_to_object_pngs(ann: ManualAnnotation) -> Iterator[tuple[str, bytes]]:
    """The SA-V val/test per-object PNG layout of a manual annotation: ``(relative path, PNG bytes)`` pairs.

    Like SA-V val/test, every object gets a PNG on every annotated frame, all zeros where it is absent
    (``null`` in the JSON), so the evaluator sees the same frame list for every object.
    """
    import numpy as np

    empty = np.zeros((ann.height, ann.width), dtype=bool)
    for frame, objs in zip(ann.annotated_frames, ann.masklet):
        for obj_id, rle in zip(ann.masklet_ids, objs):
            mask = empty if rle is None else decode_rle(rle)
            yield object_mask_path(ann.video_id, obj_id, frame), encode_object_png(mask)


# DAVIS palette: index 0 black, then the usual VOC colours (what sam2's save_ann_png writes).
def _davis_palette() -> list[int]:
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


DAVIS_PALETTE = _davis_palette()


def encode_object_png(mask: np.ndarray) -> bytes:
    """One object's binary mask as a palette PNG holding 0/1 (the SA-V val/test and sam2 output format)."""
    import numpy as np
    from PIL import Image

    img = Image.fromarray(mask.astype(bool).astype(np.uint8), mode="P")
    img.putpalette(DAVIS_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def encode_palette_png(label: np.ndarray) -> bytes:
    """A DAVIS-style label map (0 background, k = object k) as a palette PNG."""
    import numpy as np
    from PIL import Image

    if label.max(initial=0) > 255:
        raise ValueError("a palette PNG holds at most 255 objects")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(DAVIS_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MASK_MODES = ("L", "P", "1")
# (colour type, bit depth) of a PNG header -> the mode PIL opens it in
_PNG_MODES = {(0, 1): "1", (0, 2): "L", (0, 4): "L", (0, 8): "L", (0, 16): "I;16", (2, 8): "RGB", (2, 16): "RGB;16",
              (3, 1): "P", (3, 2): "P", (3, 4): "P", (3, 8): "P", (4, 8): "LA", (4, 16): "LA;16", (6, 8): "RGBA",
              (6, 16): "RGBA;16"}


@dataclass(frozen=True)
class PngInfo:
    """What a PNG's chunks say, read without inflating its pixels."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int
    idat: bytes  # the image data chunks joined: one zlib stream

    @property
    def mode(self) -> str:
        return _PNG_MODES[self.colour_type, self.bit_depth]


def read_png_chunks(data: bytes, *, file: str = "?", video: str = "?") -> PngInfo:
    """Check a PNG's structure (signature, IHDR, every chunk whole and matching its CRC, IDAT, IEND) and return
    its header; empty, foreign, truncated and damaged files are a :class:`SavFormatError` naming the chunk."""
    def bad(field: str, message: str) -> SavFormatError:
        return SavFormatError(message, file=file, video=video, field=field)

    if not data:
        raise bad("(file)", "empty file")
    if not data.startswith(PNG_SIGNATURE):
        raise bad("(file)", f"not a PNG: starts with {bytes(data[:8])!r}")
    if len(data) < 33 or data[8:16] != b"\0\0\0\x0dIHDR":
        raise bad("IHDR", f"truncated or missing header ({len(data)} bytes)")
    view, idat = memoryview(data), []
    pos, end = 8, len(data)
    while True:
        if pos + 12 > end:
            raise bad("IEND", f"truncated: the file ends after {end} bytes, before the IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        name = kind.decode("latin-1") if kind.isalpha() else "(chunks)"
        if pos + 12 + length > end:
            raise bad(name, f"truncated: chunk {kind!r} at byte {pos} needs {12 + length} bytes, the file has "
                            f"{end - pos} left")
        if zlib.crc32(view[pos + 4:pos + 8 + length]) != struct.unpack_from(">I", data, pos + 8 + length)[0]:
            raise bad(name, f"damaged: chunk {kind!r} at byte {pos} does not match its CRC")
        if kind == b"IDAT":
            idat.append(view[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, compression, filtering, interlace = _IHDR.unpack_from(data, 16)
    if (colour, depth) not in _PNG_MODES or compression or filtering or interlace > 1 or not width or not height:
        raise bad("IHDR", f"invalid header: {width}x{height}, colour type {colour}, bit depth {depth}, "
                          f"compression {compression}, filter {filtering}, interlace {interlace}")
    if not idat:
        raise bad("IDAT", "no image data")
    return PngInfo(width, height, depth, colour, interlace, b"".join(idat))


def check_mask_png(data: bytes, *, file: str = "?", video: str = "?") -> PngInfo:
    """:func:`read_png_chunks` plus the modes a mask may have (L, P or 1): all a byte-for-byte copy can check
    without decoding."""
    info = read_png_chunks(data, file=file, video=video)
    if info.mode not in MASK_MODES:
        raise SavFormatError(f"mode {info.mode}, want L or P (8-bit grey or palette) or 1 (1-bit)", file=file,
                             video=video, field="mode")
    return info


def decode_png(data: bytes, *, file: str = "?", video: str = "?") -> np.ndarray:
    """Mask PNG bytes -> the raw ``(H, W)`` uint8 index/grey values (palette indices are not mapped to colours).

    Only L, P and 1-bit PNGs are masks: any other mode, and a file that is not a PNG or is truncated or damaged,
    is a :class:`SavFormatError` naming the file, the video and what is wrong (:func:`check_mask_png`)."""
    import numpy as np
    from PIL import Image

    check_mask_png(data, file=file, video=video)
    try:
        return np.asarray(Image.open(io.BytesIO(data)), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError) \
            as exc:
        raise SavFormatError(f"pixels cannot be decoded: {exc}", file=file, video=video, field="IDAT") from exc


def decode_object_png(data: bytes, *, file: str = "?", video: str = "?") -> np.ndarray:
    """A per-object PNG -> bool mask (any non-zero value is foreground)."""
    return decode_png(data, file=file, video=video) > 0


def palette_to_objects(label: np.ndarray) -> dict[int, np.ndarray]:
    """DAVIS label map -> ``{obj_id: mask}``, obj_id = label value - 1 (0-based like the SA-V folders)."""
    import numpy as np

    return {int(v) - 1: label == v for v in np.unique(label) if v != 0}


def objects_to_palette(masks: dict[int, np.ndarray]) -> np.ndarray:
    """``{obj_id: mask}`` -> DAVIS label map; later (higher) ids win where masks overlap."""
    import numpy as np

    shape = next(iter(masks.values())).shape
    label = np.zeros(shape, dtype=np.uint8)
    for obj_id in sorted(masks):
        label[masks[obj_id]] = obj_id + 1
    return label


def parse_video_list(text: str, *, file: str = "?") -> list[str]:
    """A ``sav_val.txt``-style list: one video id per line; blanks and ``#`` comments ignored, order kept,
    duplicates rejected."""
    out: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        check_name(name, file=f"{file}:{lineno}", video=name)
        if name in seen:
            raise SavFormatError("listed twice", file=f"{file}:{lineno}", video=name, field="video id")
        seen.add(name)
        out.append(name)
    return out


def format_video_list(videos: list[str]) -> str:
    return "".join(f"{check_name(v)}\n" for v in videos)


def subset_videos(available: list[str], wanted: list[str] | None, *, file: str = "?") -> list[str]:
    """The videos of ``wanted`` (all of ``available`` when None), in the wanted order; unknown ids raise."""
    if wanted is None:
        return sorted(available)
    have = set(available)
    missing = [v for v in wanted if v not in have]
    if missing:
        raise SavFormatError(f"{len(missing)} listed videos not found: {', '.join(missing[:10])}",
                             file=file, video=missing[0], field="video list")
    return list(wanted)
