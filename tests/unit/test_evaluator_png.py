"""The evaluator's PNG decoding: the fast path (zlib-ng, PNG row filters undone in numpy) gives exactly PIL's
pixels, for every filter type and every mask mode, written by PIL, by OpenCV or by hand with a chosen filter per
row; whatever it does not take goes to PIL; and :func:`decode_mask` gives the bounding box and pixels of PIL's."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from savflow.common.savformat import DAVIS_PALETTE, SavFormatError, encode_object_png, encode_palette_png
from savflow.evaluate.jf import Mask
from savflow.evaluate.png import _decode_fast, decode_mask, decode_mask_png

NONE, SUB, UP, AVERAGE, PAETH = range(5)


def _pil(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.uint8)


def _assert_decodes_as_pil(data: bytes, *, fast: bool = True) -> None:
    want = _pil(data)
    if fast:
        assert _decode_fast(data) is not None, "the fast path should take this file"
    np.testing.assert_array_equal(decode_mask_png(data), want)
    got, expected = decode_mask(data), Mask.of(want)
    assert (got.shape, got.box) == (expected.shape, expected.box)
    if expected.box is not None:
        np.testing.assert_array_equal(got.pixels, expected.pixels)


# ---------------------------------------------------------------------------------------------- a PNG writer


def _filter_row(kind: int, line: np.ndarray, above: np.ndarray) -> np.ndarray:
    """PNG filter ``kind`` applied to one row of bytes (one byte per pixel or less: the left neighbour is the
    previous byte), as the PNG specification defines it."""
    x, b = line.astype(np.int64), above.astype(np.int64)
    a = np.concatenate(([0], x[:-1]))
    c = np.concatenate(([0], b[:-1]))
    if kind == NONE:
        out = x
    elif kind == SUB:
        out = x - a
    elif kind == UP:
        out = x - b
    elif kind == AVERAGE:
        out = x - (a + b) // 2
    else:
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        out = x - np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return (out & 255).astype(np.uint8)


def _pack(pixels: np.ndarray, depth: int) -> np.ndarray:
    if depth == 8:
        return pixels.astype(np.uint8)
    per = 8 // depth
    height, width = pixels.shape
    padded = np.zeros((height, -(-width // per) * per), np.int64)
    padded[:, :width] = pixels
    shifts = np.arange(per - 1, -1, -1) * depth
    return (padded.reshape(height, -1, per) << shifts).sum(axis=-1).astype(np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(pixels: np.ndarray, filters, *, colour: int = 0, depth: int = 8, trailing: bytes = b"",
         padding: int = 0) -> bytes:
    """A grey (colour 0) or palette (3) PNG of ``pixels`` whose row y uses filter ``filters[y % len(filters)]``;
    ``padding``: the unused low bits of each row's last byte (depths below 8)."""
    packed = _pack(pixels, depth)
    if padding:
        packed[:, -1] |= padding
    above = np.zeros(packed.shape[1], np.uint8)
    body = b""
    for y, line in enumerate(packed):
        kind = filters[y % len(filters)]
        body += bytes([kind]) + _filter_row(kind, line, above).tobytes()
        above = line
    head = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], depth, colour, 0, 0, 0)
    palette = _chunk(b"PLTE", bytes(DAVIS_PALETTE[:3 << depth])) if colour == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", head) + palette
            + _chunk(b"IDAT", zlib.compress(body + trailing)) + _chunk(b"IEND", b""))


def _images(height: int, width: int, top: int, seed: int) -> list[np.ndarray]:
    """Masks with values 0..top: empty, full, a disc, one at every border, noise, a staircase."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    border = np.zeros((height, width), np.int64)
    border[-1, :] = border[:, -1] = border[0, 0] = top
    return [np.zeros((height, width), np.int64), np.full((height, width), top),
            np.where((yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (min(height, width) / 3) ** 2 + 1, top, 0),
            border, np.where(rng.random((height, width)) < 0.4, top, 0), rng.integers(0, top + 1, (height, width)),
            np.where(xx + 2 * yy > width, top, 0)]


MODES = [(0, 8), (3, 8), (0, 1), (3, 1), (0, 2), (3, 2), (0, 4), (3, 4)]
FILTERS = [[NONE], [SUB], [UP], [AVERAGE], [PAETH], [NONE, SUB, UP, AVERAGE, PAETH], [PAETH, PAETH, UP, SUB],
           [AVERAGE, UP, UP], [UP, PAETH, AVERAGE, NONE]]


@pytest.mark.parametrize("colour,depth", MODES)
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "".join(map(str, f)))
def test_every_filter_type_decodes_as_pil(colour: int, depth: int, filters: list[int]) -> None:
    top = (1 << depth) - 1
    for shape in [(1, 1), (1, 9), (7, 1), (13, 17), (24, 33)]:
        for i, pixels in enumerate(_images(*shape, top, seed=shape[0] * 100 + shape[1])):
            data = _png(pixels, filters, colour=colour, depth=depth)
            _assert_decodes_as_pil(data, fast=True)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20), st.integers(1, 40), st.sampled_from(MODES), st.integers(0, 2 ** 32 - 1),
       st.floats(0, 1))
def test_random_rows_and_filters_decode_as_pil(height: int, width: int, mode: tuple[int, int], seed: int,
                                               density: float) -> None:
    colour, depth = mode
    rng = np.random.default_rng(seed)
    top = (1 << depth) - 1
    pixels = np.where(rng.random((height, width)) < density, rng.integers(1, top + 1, (height, width)), 0)
    if rng.random() < 0.5:  # rows repeating, as in masks
        pixels = pixels[np.sort(rng.integers(0, height, height))]
    filters = rng.integers(0, 5, height).tolist()
    _assert_decodes_as_pil(_png(pixels, filters, colour=colour, depth=depth), fast=False)


def test_average_rows_settle_past_the_last_non_zero_byte() -> None:
    """An Average row keeps changing for up to 8 pixels after its last non-zero byte."""
    pixels = np.zeros((4, 40), np.int64)
    pixels[1:, :5] = 255
    pixels[2, 5:] = 254  # rows below a bright row, decoded pixel by pixel towards it
    _assert_decodes_as_pil(_png(pixels, [NONE, AVERAGE, AVERAGE, PAETH]))
    _assert_decodes_as_pil(_png(pixels[:, ::-1].copy(), [AVERAGE]))


def test_padding_bits_are_not_pixels() -> None:
    pixels = np.zeros((5, 3), np.int64)
    pixels[2, 1] = 1
    for filters in ([NONE], [SUB], [PAETH]):
        _assert_decodes_as_pil(_png(pixels, filters, depth=1, padding=0b11111))
        _assert_decodes_as_pil(_png(np.zeros((5, 3), np.int64), filters, depth=1, padding=0b101), fast=False)


# ---------------------------------------------------------------------------------------------- what tools write


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:37, 0:53]
    return [
        np.zeros((37, 53), bool),
        np.ones((37, 53), bool),
        (yy - 10) ** 2 + (xx - 40) ** 2 < 200,
        rng.random((37, 53)) < 0.5,
        (yy > 30) | (xx > 50),  # touching the last row and column
    ]


def _save(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **params)
    return buf.getvalue()


@pytest.mark.parametrize("index", range(5))
def test_pil_and_opencv_masks_take_the_fast_path(index: int) -> None:
    mask = _masks()[index]
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    palette = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette.putpalette(DAVIS_PALETTE)
    ok, opencv = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    assert ok
    for data in [encode_object_png(mask), _save(grey), _save(grey, optimize=True), _save(grey.convert("1")),
                 _save(palette), _save(palette, bits=4), opencv.tobytes()]:
        _assert_decodes_as_pil(data)
        assert np.array_equal(decode_mask_png(data) > 0, mask)


def test_pil_grey_masks_use_row_filters() -> None:
    """What the fast path is for: PIL's mode L (and OpenCV) pick a filter per row, not None everywhere."""
    mask = _masks()[2].astype(np.uint8) * 255
    for data in [_save(Image.fromarray(mask)), cv2.imencode(".png", mask)[1].tobytes()]:
        pos = data.index(b"IDAT")
        raw = zlib.decompress(data[pos + 4:pos + 4 + struct.unpack(">I", data[pos - 4:pos])[0]])
        assert set(np.frombuffer(raw, np.uint8).reshape(37, 54)[:, 0].tolist()) - {NONE}


def test_real_size_masks_from_every_writer() -> None:
    """An 848x480 portrait mask with a thin part, as PIL L, P, 1 and OpenCV write it."""
    yy, xx = np.mgrid[0:848, 0:480]
    mask = (((yy - 500) / 300) ** 2 + ((xx - 200) / 150) ** 2 < 1) | ((np.abs(xx - 400) < 2) & (yy < 700))
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    for data in [encode_object_png(mask), _save(grey), _save(grey.convert("1")),
                 cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()]:
        _assert_decodes_as_pil(data)


def test_palette_png_fast_path_equals_pil() -> None:
    label = np.random.default_rng(1).integers(0, 7, (40, 30)).astype(np.uint8)
    data = encode_palette_png(label)
    _assert_decodes_as_pil(data)
    np.testing.assert_array_equal(decode_mask_png(data), label)


# ------------------------------------------------------------------------------------------------- to PIL


def test_interlaced_goes_through_pil() -> None:
    """(PIL writes no interlaced PNGs: the header is changed by hand, and PIL reads the rows as Adam7 passes.)"""
    data = bytearray(_png(_images(16, 16, 255, seed=0)[2], [NONE]))
    data[28] = 1  # IHDR interlace method
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    data = bytes(data)
    assert _decode_fast(data) is None
    try:
        want = _pil(data)
    except Exception:  # noqa: BLE001  (then ours must refuse it too, naming the file)
        with pytest.raises(SavFormatError, match="x.png"):
            decode_mask_png(data, file="x.png")
    else:
        np.testing.assert_array_equal(decode_mask_png(data), want)


def test_too_many_sequential_steps_go_through_pil() -> None:
    """Noise under Paeth filters would take a Python step per pixel: PIL decodes it faster."""
    pixels = np.random.default_rng(3).integers(0, 256, (200, 200))
    data = _png(pixels, [PAETH])
    assert _decode_fast(data) is None
    _assert_decodes_as_pil(data, fast=False)


def test_extra_data_after_the_rows_goes_through_pil() -> None:
    pixels = _images(9, 11, 255, seed=0)[2]
    data = _png(pixels, [SUB], trailing=b"\x00" * 5)
    assert _decode_fast(data) is None
    assert decode_mask_png(data).shape == (9, 11)  # PIL ignores what follows the rows


def test_unknown_filter_type_is_named() -> None:
    data = _png(_images(5, 6, 255, seed=0)[2], [SUB])
    pos = data.index(b"IDAT")
    length = struct.unpack(">I", data[pos - 4:pos])[0]
    raw = bytearray(zlib.decompress(data[pos + 4:pos + 4 + length]))
    raw[0] = 7
    body = zlib.compress(bytes(raw))
    data = data[:pos - 4] + _chunk(b"IDAT", body) + data[pos + 8 + length:]
    assert _decode_fast(data) is None
    with pytest.raises(SavFormatError, match="x.png"):
        decode_mask_png(data, file="x.png")
    with pytest.raises(SavFormatError, match="x.png"):
        decode_mask(data, file="x.png")


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
    for data in [_split_idat(encode_object_png(mask)), _split_idat(_save(Image.fromarray(mask)))]:
        assert data.count(b"IDAT") == 2
        _assert_decodes_as_pil(data)


def test_broken_png_names_the_file() -> None:
    data = encode_object_png(_masks()[2])
    for read in (decode_mask_png, decode_mask):
        with pytest.raises(SavFormatError, match="gs://b/v/000/00004.png"):
            read(data[:60], file="gs://b/v/000/00004.png")
        with pytest.raises(SavFormatError, match="x.png"):
            read(b"not a png", file="x.png")


def _kinds() -> list[bytes]:
    mask = _masks()[2]
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    return [encode_object_png(mask), _save(grey), _save(grey.convert("1")),
            cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes(), _png(mask * 255, [PAETH, UP, AVERAGE])]


KINDS = _kinds()


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(KINDS) - 1), st.integers(0, 10 ** 6), st.integers(0, 255), st.booleans())
def test_damaged_files_fail_alike_on_both_paths(kind: int, where: int, value: int, truncate: bool) -> None:
    """A cut or changed byte: the whole-image and the box decoding agree, or both name the file."""
    data = bytearray(KINDS[kind])
    where %= len(data)
    if truncate:
        data = data[:where]
    else:
        data[where] = value
    data = bytes(data)
    try:
        want = Mask.of(decode_mask_png(data, file="x.png"))
    except SavFormatError as exc:
        assert "x.png" in str(exc)
        with pytest.raises(SavFormatError, match="x.png"):
            decode_mask(data, file="x.png")
        return
    got = decode_mask(data, file="x.png")
    assert (got.shape, got.box) == (want.shape, want.box)
    if want.box is not None:
        np.testing.assert_array_equal(got.pixels, want.pixels)
