"""The evaluator's PNG decoding: the unfiltered fast path gives exactly PIL's pixels, everything else goes to PIL."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from savflow.common.savformat import SavFormatError, encode_object_png, encode_palette_png
from savflow.evaluate.png import _decode_unfiltered, decode_mask_png


def _pil(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:37, 0:53]
    return [
        np.zeros((37, 53), bool),
        np.ones((37, 53), bool),
        (yy - 10) ** 2 + (xx - 40) ** 2 < 200,
        rng.random((37, 53)) < 0.5,
    ]


@pytest.mark.parametrize("index", range(4))
def test_object_png_fast_path_equals_pil(index: int) -> None:
    data = encode_object_png(_masks()[index])
    assert _decode_unfiltered(data) is not None  # PIL writes palette PNGs unfiltered: the fast path applies
    np.testing.assert_array_equal(decode_mask_png(data), _pil(data))


def test_palette_png_fast_path_equals_pil() -> None:
    label = np.random.default_rng(1).integers(0, 7, (40, 30)).astype(np.uint8)
    data = encode_palette_png(label)
    np.testing.assert_array_equal(decode_mask_png(data), label)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_filtered_or_packed_pngs_go_through_pil(mode: str) -> None:
    mask = _masks()[3]
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).convert(mode).save(buf, format="PNG")
    data = buf.getvalue()
    assert _decode_unfiltered(data) is None
    np.testing.assert_array_equal(decode_mask_png(data) > 0, mask)


def test_opencv_png_goes_through_pil() -> None:
    mask = _masks()[2].astype(np.uint8) * 255
    ok, buf = cv2.imencode(".png", mask)
    assert ok
    np.testing.assert_array_equal(decode_mask_png(buf.tobytes()), mask)


def _split_idat(data: bytes) -> bytes:
    """The same PNG with its one IDAT chunk cut in two (valid: decoders concatenate IDAT data)."""
    pos = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[pos:pos + 4])[0]
    body = data[pos + 8:pos + 8 + length]
    chunks = b""
    for part in (body[:length // 2], body[length // 2:]):
        chunks += struct.pack(">I", len(part)) + b"IDAT" + part + struct.pack(">I", zlib.crc32(b"IDAT" + part))
    return data[:pos] + chunks + data[pos + 12 + length:]


def test_multiple_idat_chunks() -> None:
    mask = _masks()[3]
    data = _split_idat(encode_object_png(mask))
    assert data.count(b"IDAT") == 2
    np.testing.assert_array_equal(_pil(data), mask)
    assert _decode_unfiltered(data) is not None
    np.testing.assert_array_equal(decode_mask_png(data), mask.astype(np.uint8))


def test_broken_png_names_the_file() -> None:
    data = encode_object_png(_masks()[2])
    with pytest.raises(SavFormatError, match="gs://b/v/000/00004.png"):
        decode_mask_png(data[:60], file="gs://b/v/000/00004.png")
    with pytest.raises(SavFormatError, match="x.png"):
        decode_mask_png(b"not a png", file="x.png")
