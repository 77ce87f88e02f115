"""Bad mask PNGs, generated: truncated, damaged, foreign or empty files, wrong modes (RGB, RGBA, LA, 16-bit), wrong
sizes and palettes holding several objects. Every reader of masks (savformat, the evaluator's fast path, the
inference prompts) gives a SavFormatError naming the file, the video and what is wrong, never another exception;
and in a run over several videos the bad one is named while the others are scored."""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import reliability
from savflow.common import savformat
from savflow.common.savformat import SavFormatError
from savflow.evaluate.evaluator import EvaluationError, evaluate
from savflow.evaluate.png import decode_mask_png
from savflow.infer.vos import MaskIndex

H, W = 24, 32
VIDEO = "sav_000007"
FILE = f"gs://b/Annotations_6fps/{VIDEO}/000/00004.png"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mask(shift: int = 0) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[5:15, 6 + shift:20 + shift] = True
    return mask


def _save(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **params)
    return buf.getvalue()


def _split_idat(data: bytes) -> bytes:
    """The same PNG with its IDAT chunk cut in two (valid: decoders join IDAT data)."""
    pos = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[pos:pos + 4])[0]
    body = data[pos + 8:pos + 8 + length]
    chunks = b"".join(struct.pack(">I", len(p)) + b"IDAT" + p + struct.pack(">I", zlib.crc32(b"IDAT" + p))
                      for p in (body[:length // 2], body[length // 2:]))
    return data[:pos] + chunks + data[pos + 12 + length:]


def _good_pngs() -> dict[str, bytes]:
    """Valid mask PNGs of every kind the readers accept: PIL palette (the fast path), grey, 1-bit, 4-bit palette,
    interlaced, OpenCV-style filtered grey, split IDAT."""
    mask = _mask()
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    palette = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette.putpalette(savformat.DAVIS_PALETTE[:48])
    return {"palette": savformat.encode_object_png(mask), "grey": _save(grey), "1-bit": _save(grey.convert("1")),
            "4-bit palette": _save(palette, bits=4), "interlaced": _save(palette, interlace=1),
            "grey optimized": _save(grey, optimize=True), "split IDAT": _split_idat(savformat.encode_object_png(mask))}


GOOD = _good_pngs()
READERS = {"decode_png": savformat.decode_png, "decode_mask_png": decode_mask_png}


def _bad_mode(mode: str, mask: np.ndarray) -> bytes:
    """A mask saved in a mode that is not a mask mode."""
    values = mask.astype(np.uint8) * 255
    if mode == "I;16":
        return _save(Image.fromarray(mask.astype(np.uint16) * 1000))
    if mode == "RGB;16":  # 16 bits per channel: PIL cannot write it, so the header says so and the rest is 8-bit
        return _with_header(_save(Image.fromarray(np.stack([values] * 3, -1))), colour=2, depth=16)
    return _save(Image.fromarray(values).convert(mode))


def _with_header(data: bytes, *, colour: int, depth: int) -> bytes:
    """``data`` with the IHDR's colour type and bit depth replaced (and its CRC fixed)."""
    ihdr = bytearray(data[12:29])
    ihdr[12], ihdr[13] = depth, colour
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


def _error(read, data: bytes) -> SavFormatError:
    """The SavFormatError ``read`` gives for ``data``; anything else (or a decoded mask) fails the test."""
    with pytest.raises(SavFormatError) as info:
        read(data, file=FILE, video=VIDEO)
    exc = info.value
    named = (exc.file, exc.video) == (FILE, VIDEO) and exc.field != "?" and \
        str(exc).startswith(f"{FILE}: video {VIDEO}: field {exc.field}: ")
    reliability.bad_input("PNG mask readers (all steps)", rejected_with_name=named)
    assert named, str(exc)
    return exc


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_every_good_kind_decodes_as_pil(kind: str) -> None:
    want = np.asarray(Image.open(io.BytesIO(GOOD[kind])), dtype=np.uint8)
    for read in READERS.values():
        got = read(GOOD[kind], file=FILE, video=VIDEO)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got > 0, _mask())


@FAST
@given(kind=st.sampled_from(sorted(GOOD)), reader=st.sampled_from(sorted(READERS)), data=st.data())
def test_truncated_png_is_named(kind: str, reader: str, data: st.DataObject) -> None:
    good = GOOD[kind]
    cut = data.draw(st.integers(0, len(good) - 1), label="cut")
    exc = _error(READERS[reader], good[:cut])
    expected = ("empty file" if cut == 0 else "not a PNG" if cut < 8 else
                "truncated or missing header" if cut < 33 else "truncated")
    assert expected in str(exc)


@FAST
@given(kind=st.sampled_from(sorted(GOOD)), reader=st.sampled_from(sorted(READERS)), data=st.data())
def test_damaged_bytes_never_decode(kind: str, reader: str, data: st.DataObject) -> None:
    """Up to four consecutive bytes changed anywhere: the signature, a length, a chunk type or body, a CRC.
    CRC-32 catches every such burst, so no damaged file passes as a mask (the fast path reads no CRC itself)."""
    good = GOOD[kind]
    pos = data.draw(st.integers(0, len(good) - 1), label="pos")
    burst = data.draw(st.binary(min_size=1, max_size=min(4, len(good) - pos)), label="burst")
    damaged = good[:pos] + burst + good[pos + len(burst):]
    if damaged == good:
        return
    _error(READERS[reader], damaged)


@FAST
@given(blob=st.binary(max_size=300), signed=st.booleans(), reader=st.sampled_from(sorted(READERS)))
def test_arbitrary_bytes_are_a_named_error(blob: bytes, signed: bool, reader: str) -> None:
    _error(READERS[reader], (savformat.PNG_SIGNATURE if signed else b"") + blob)


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(["RGB", "RGBA", "LA", "I;16", "RGB;16"]), reader=st.sampled_from(sorted(READERS)),
       shift=st.integers(-5, 5))
def test_wrong_mode_is_named(mode: str, reader: str, shift: int) -> None:
    exc = _error(READERS[reader], _bad_mode(mode, _mask(shift)))
    assert exc.field == "mode" and f"mode {mode}, want L or P" in str(exc) and "or 1 (1-bit)" in str(exc)


@settings(max_examples=60, deadline=None)
@given(colour=st.integers(0, 255), depth=st.integers(0, 255), reader=st.sampled_from(sorted(READERS)))
def test_any_header_colour_type_and_depth(colour: int, depth: int, reader: str) -> None:
    """A header claiming any colour type and bit depth (its CRC fixed): a mode that is not a mask's, or no mode at
    all, is an error naming the header or the mode; a mask mode decodes to the header's size (PIL reads fewer
    bits per pixel and ignores the rest) or is an error naming the pixels."""
    data = _with_header(GOOD["palette"], colour=colour, depth=depth)
    if (colour, depth) in ((0, 1), (0, 2), (0, 4), (0, 8), (3, 1), (3, 2), (3, 4), (3, 8)):
        try:
            assert READERS[reader](data, file=FILE, video=VIDEO).shape == (H, W)
        except SavFormatError as exc:
            assert (exc.file, exc.video, exc.field) == (FILE, VIDEO, "IDAT"), str(exc)
        return
    exc = _error(READERS[reader], data)
    assert exc.field in ("IHDR", "mode"), str(exc)


# ---- the inference prompts: MaskIndex names the source URI, the video and the field


def _index(root: Path, data: bytes) -> MaskIndex:
    folder = root / "000"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00004.png").write_bytes(data)
    return MaskIndex.scan(VIDEO, root, origin=f"gs://b/Annotations_6fps/{VIDEO}/")


BAD_KINDS = ["truncated", "empty", "not a PNG", "RGB", "RGBA", "I;16", "LA", "values", "damaged"]


def _bad(kind: str, cut: int = 100) -> bytes:
    good = savformat.encode_object_png(_mask())
    if kind == "truncated":
        return good[:min(cut, len(good) - 1)]
    if kind == "empty":
        return b""
    if kind == "not a PNG":
        return b"\xff\xd8\xff\xe0 a JPEG, say"
    if kind == "values":
        label = _mask().astype(np.uint8)
        label[6:9, 8:11] = 2
        return savformat.encode_palette_png(label)
    if kind == "damaged":
        return good[:60] + bytes([good[60] ^ 0x10]) + good[61:]
    return _bad_mode(kind, _mask())


WHAT = {"truncated": "truncated", "empty": "empty file", "not a PNG": "not a PNG", "RGB": "mode RGB, want L or P",
        "RGBA": "mode RGBA, want L or P", "I;16": "mode I;16, want", "LA": "mode LA, want", "damaged": "CRC",
        "values": "one object", "size": "shape"}


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(BAD_KINDS), cut=st.integers(0, 400))
def test_prompt_masks_name_the_source_file_video_and_field(kind: str, cut: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index = _index(Path(tmp), _bad(kind, cut))
        with pytest.raises(SavFormatError) as info:
            index.load(0, 4)
    exc = info.value
    named = (exc.file, exc.video) == (FILE, VIDEO) and (WHAT[kind] in str(exc) or kind == "truncated" and cut < 33)
    reliability.bad_input("infer", rejected_with_name=named)
    assert named, str(exc)
    if kind == "values":
        assert exc.field == "values" and "values [0, 1, 2]" in str(exc)


def test_prompt_masks_accept_any_two_values(tmp_path: Path) -> None:
    """As the evaluator: 0 and any one value is one object (0/255 grey, 0/1 palette, 1-bit)."""
    for kind in ("palette", "grey", "1-bit", "4-bit palette"):
        np.testing.assert_array_equal(_index(tmp_path / kind, GOOD[kind]).load(0, 4), _mask())


# ---- the evaluator: the bad video is named, the others are scored


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _videos(root: Path, videos: list[str]) -> tuple[Path, Path]:
    """Ground truth and (shifted) predictions of one object on frames 0..12 for each video."""
    for n, video in enumerate(videos):
        for t in range(4):
            _write(root / "gt" / video / "000" / f"{4 * t:05d}.png", savformat.encode_object_png(_mask()))
            _write(root / "pred" / video / "000" / f"{4 * t:05d}.png", savformat.encode_object_png(_mask(n + t)))
    return root / "gt", root / "pred"


def _bad_for_eval(kind: str, cut: int) -> bytes:
    if kind == "size":
        return savformat.encode_object_png(np.zeros((H, W + 3), bool))
    return _bad(kind, cut)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(BAD_KINDS + ["size"]), side=st.sampled_from(["gt", "pred"]), cut=st.integers(0, 400),
       bad=st.sampled_from(["a", "b", "c"]))
def test_evaluator_names_the_bad_video_and_scores_the_others(kind: str, side: str, cut: int, bad: str) -> None:
    videos = ["a", "b", "c"]
    with tempfile.TemporaryDirectory() as tmp:
        gt, pred = _videos(Path(tmp), videos)
        clean = evaluate(str(gt), str(pred), num_workers=1)
        uri = f"{gt if side == 'gt' else pred}/{bad}/000/00004.png"
        Path(uri).write_bytes(_bad_for_eval(kind, cut))
        with pytest.raises(EvaluationError) as info:
            evaluate(str(gt), str(pred), num_workers=1)
        result = evaluate(str(gt), str(pred), num_workers=1, max_failures=1)
    message = str(info.value)
    named = f"{pred}/{bad}/000/00004.png" if kind == "size" else uri  # a size mismatch names both files
    ok = (message.startswith("evaluation failed:") and f"video {bad}:" in message and named in message
          and (WHAT[kind] in message or kind == "truncated" and cut < 33))
    reliability.bad_input("evaluate", rejected_with_name=ok)
    assert ok, message
    [failure] = result.failures
    assert (failure.video, failure.stage) == (bad, "score") and failure.reason in message
    kept = {(o.video, o.obj): (o.j, o.f) for o in clean.objects if o.video != bad}
    assert {(o.video, o.obj): (o.j, o.f) for o in result.objects} == kept


def test_evaluator_in_worker_processes_names_every_bad_video(tmp_path: Path) -> None:
    gt, pred = _videos(tmp_path, ["a", "b", "c", "d"])
    (pred / "b" / "000" / "00008.png").write_bytes(_bad("RGB"))
    (gt / "d" / "000" / "00004.png").write_bytes(_bad("truncated"))
    with pytest.raises(EvaluationError) as info:
        evaluate(str(gt), str(pred), num_workers=2, max_failures=1)
    message = str(info.value)
    assert f"{pred}/b/000/00008.png: video b: field mode: mode RGB" in message
    assert f"{gt}/d/000/00004.png: video d: field PLTE: truncated: chunk b'PLTE' at byte 33" in message
    result = evaluate(str(gt), str(pred), num_workers=2, max_failures=2)
    assert [f.video for f in result.failures] == ["b", "d"] and {o.video for o in result.objects} == {"a", "c"}


def test_missing_prediction_counts_as_a_failure_too(tmp_path: Path) -> None:
    gt, pred = _videos(tmp_path, ["a", "b"])
    (pred / "b" / "000" / "00008.png").unlink()
    with pytest.raises(EvaluationError, match=f"cannot evaluate:\n  {pred}/b/000/00008.png: prediction not found"):
        evaluate(str(gt), str(pred), num_workers=1)
    result = evaluate(str(gt), str(pred), num_workers=1, max_failures=1)
    assert [(f.video, f.stage) for f in result.failures] == [("b", "plan")] and result.objects[0].video == "a"
