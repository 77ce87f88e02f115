"""Fast decoding of mask PNGs: the evaluator reads two per object and frame, so decoding sets its pace.

Masks written by PIL in palette mode (ours, sam2's, DAVIS's) are 8-bit, non-interlaced and use PNG filter type 0
on every row, so their pixels are the inflated IDAT stream minus one filter byte per row. Inflating that stream
with zlib-ng takes about 0.03 ms for an 848x480 mask, against about 0.75 ms with the zlib that Python and PIL
link here. Any other PNG (other bit depths, colour types, interlacing, row filters) goes through PIL unchanged.
Either way the file's structure is checked first (:func:`savflow.common.savformat.check_mask_png`), so a bad
file gives the same error on both paths.
"""

from __future__ import annotations

import numpy as np

from savflow.common.savformat import PngInfo, SavFormatError, check_mask_png, decode_png, read_png_chunks

try:
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # zlib-ng is optional: stdlib zlib gives the same bytes, only slower
    import zlib as _zlib

INFLATER = _zlib.__name__
_MAX_DEFLATE_RATIO = 1032  # deflate never expands more than this: a header claiming more pixels is not believed


def decode_mask_png(data: bytes, *, file: str = "?", video: str = "?") -> np.ndarray:
    """PNG bytes -> ``(H, W)`` uint8 grey values or palette indices (read-only), as PIL's ``np.asarray``; a bad
    file is a :class:`SavFormatError` naming ``file``, ``video`` and what is wrong."""
    pixels = _decode_unfiltered(data, check_mask_png(data, file=file, video=video))
    if pixels is None:
        return decode_png(data, file=file, video=video)
    return pixels


def _decode_unfiltered(data: bytes, info: PngInfo | None = None) -> np.ndarray | None:
    """The pixels of an 8-bit grey/palette, non-interlaced PNG whose rows are all unfiltered; else None."""
    if info is None:
        try:
            info = read_png_chunks(data)
        except SavFormatError:
            return None
    width, height = info.width, info.height
    if info.bit_depth != 8 or info.colour_type not in (0, 3) or info.interlace != 0:
        return None
    stride = width + 1
    if height * stride > _MAX_DEFLATE_RATIO * len(info.idat):
        return None
    try:
        raw = _zlib.decompress(info.idat, bufsize=height * stride)
    except _zlib.error:
        return None
    if len(raw) != height * stride:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    if rows[:, 0].any():
        return None
    return rows[:, 1:]
