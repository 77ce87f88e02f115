"""Fast decoding of mask PNGs: the evaluator reads two per object and frame, so decoding sets its pace.

Masks written by PIL in palette mode (ours, sam2's, DAVIS's) are 8-bit, non-interlaced and use PNG filter type 0
on every row, so their pixels are the inflated IDAT stream minus one filter byte per row. Inflating that stream
with zlib-ng takes about 0.03 ms for an 848x480 mask, against about 0.75 ms with the zlib that Python and PIL
link here. Any other PNG (other bit depths, colour types, interlacing, row filters) goes through PIL unchanged.
"""

from __future__ import annotations

import struct

import numpy as np

from savflow.common.savformat import decode_png

try:
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # zlib-ng is optional: stdlib zlib gives the same bytes, only slower
    import zlib as _zlib

INFLATER = _zlib.__name__
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">IIBBBBB")


def decode_mask_png(data: bytes, *, file: str = "?") -> np.ndarray:
    """PNG bytes -> ``(H, W)`` uint8 grey values or palette indices (read-only), as PIL's ``np.asarray``."""
    pixels = _decode_unfiltered(data)
    if pixels is None:
        return decode_png(data, file=file)
    return pixels


def _decode_unfiltered(data: bytes) -> np.ndarray | None:
    """The pixels of an 8-bit grey/palette, non-interlaced PNG whose rows are all unfiltered; else None."""
    if not data.startswith(_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _compression, _filter, interlace = _IHDR.unpack_from(data, 16)
    if depth != 8 or colour not in (0, 3) or interlace != 0 or width == 0 or height == 0:
        return None
    chunks = []
    pos = 8
    end = len(data)
    while pos + 8 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    stride = width + 1
    try:
        raw = _zlib.decompress(b"".join(chunks), bufsize=height * stride)
    except _zlib.error:
        return None
    if len(raw) != height * stride:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    if rows[:, 0].any():
        return None
    return rows[:, 1:]
