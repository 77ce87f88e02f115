"""Fast decoding of mask PNGs: the evaluator reads two per object and frame, so decoding sets its pace.

Mask PNGs are grey or palette images of one channel, 8-bit (PIL modes L and P, OpenCV) or 1-bit (PIL mode 1),
sometimes 2- or 4-bit, non-interlaced. Their pixels are the inflated IDAT stream, one filter-type byte in front of
every row. The stream is inflated with zlib-ng (a ``decompressobj``: about 0.03 ms for an 848x480 mask, against
about 0.8 ms with the zlib that Python, PIL and OpenCV link here, and 0.2 ms with ``zlib_ng.decompress``, which
grows its output buffer step by step for small, highly compressed masks).

Rows are then unfiltered (PNG filter types 0-4: None, Sub, Up, Average, Paeth; one byte per pixel or less, so the
left neighbour is the previous byte) in time that grows with the bytes that are not zero, which for a mask are
few: PIL writes palette masks unfiltered, and libpng (OpenCV) and PIL's grey and 1-bit writers pick per row the
filter whose bytes are nearest to zero (Sub for a row that crosses the object, None for an empty row, Up for a
row like the one above, now and then Paeth). In terms of ``h``, each row's differences from its left neighbour,
every None, Sub and Up row adds a sparse row of differences (Sub: its bytes; None and Up: its bytes minus their
left neighbours) to ``h`` of the previous row (Up) or to zero (None, Sub), so the pixels are a two-dimensional
running sum restarted at every None and Sub row: one ``cv2.integral`` over the window where bytes are not zero,
and a difference of two of its rows per image row. Average rows, and Paeth rows whose bytes are not all zero (an
all-zero Paeth row repeats the row above, as Up does), depend on the pixel to their left: the sum first takes them
as rows of zeros; then they are decoded in order, each from the finished row above, as runs of equal pixels,
stepping only where the row's bytes are not zero or the row above changes (elsewhere a Paeth pixel repeats its
left neighbour and an Average pixel settles within 8 steps), and added to the Up rows that follow them. A file
that would need more such steps than PIL would take goes to PIL, as do 16-bit and interlaced files.

:func:`decode_mask_png` gives the whole image; :func:`decode_mask`, for the evaluator, only the bounding box of
the pixels that are not zero and the pixels inside it, found from the rows that hold bytes that are not zero
without making the rest of the image.

Either way the file's structure is checked first (:func:`savflow.common.savformat.check_mask_png`), so a bad file
gives the same error on both paths, and the pixels are PIL's ``np.asarray(Image.open(...), dtype=np.uint8)``:
grey values (1-bit grey as 0/1, 2- and 4-bit grey scaled to 0-255, as PIL opens them) or palette indices.
"""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache

import cv2
import numpy as np

from savflow.common.savformat import PngInfo, SavFormatError, check_mask_png, decode_png, read_png_chunks
from savflow.evaluate.jf import Box, Mask

try:
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # zlib-ng is optional: stdlib zlib gives the same bytes, only slower
    import zlib as _zlib

INFLATER = _zlib.__name__
_MAX_DEFLATE_RATIO = 1032  # deflate never expands more than this: a header claiming more pixels is not believed
_NONE, _SUB, _UP, _AVERAGE, _PAETH = range(5)
_MAX_STEPS = 4000  # pixel steps of Average/Paeth rows in Python beyond which PIL is faster


def decode_mask_png(data: bytes, *, file: str = "?", video: str = "?") -> np.ndarray:
    """PNG bytes -> ``(H, W)`` uint8 grey values or palette indices (maybe read-only), as PIL's ``np.asarray``; a
    bad file is a :class:`SavFormatError` naming ``file``, ``video`` and what is wrong."""
    pixels = _decode_fast(data, check_mask_png(data, file=file, video=video))
    if pixels is None:
        return decode_png(data, file=file, video=video)
    return pixels


def decode_mask(data: bytes, *, file: str = "?", video: str = "?") -> Mask:
    """PNG bytes -> the :class:`~savflow.evaluate.jf.Mask` of its pixels (their bounding box and the pixels
    inside it, the same values as :func:`decode_mask_png`): what the evaluator keeps of a mask, found without
    making the whole image where the rows say where the object is."""
    info = check_mask_png(data, file=file, video=video)
    found = _decode_fast(data, info, whole=False)
    if found is None:
        return Mask.of(decode_png(data, file=file, video=video))
    return found


def _decode_fast(data: bytes, info: PngInfo | None = None, *, whole: bool = True) -> np.ndarray | Mask | None:
    """The pixels of a 1-, 2-, 4- or 8-bit grey or palette, non-interlaced PNG (``whole``: the image, else its
    :class:`Mask`); None where PIL should decode it (another kind of PNG, a stream that does not inflate to
    exactly the rows, an unknown filter type, too many sequential steps)."""
    if info is None:
        try:
            info = read_png_chunks(data)
        except SavFormatError:
            return None
    width, height, depth = info.width, info.height, info.bit_depth
    if depth not in (1, 2, 4, 8) or info.colour_type not in (0, 3) or info.interlace != 0:
        return None
    row_bytes = (width * depth + 7) // 8
    stride = row_bytes + 1
    size = height * stride
    if size > _MAX_DEFLATE_RATIO * len(info.idat):
        return None
    try:  # into a buffer of the rows' size (growing one step by step costs 10 times the inflating)
        inflater = _zlib.decompressobj()
        raw = inflater.decompress(info.idat, size)
        if not inflater.eof and (inflater.decompress(inflater.unconsumed_tail, 1) or not inflater.eof):
            return None  # more data than rows, or a stream that does not end
    except _zlib.error:
        return None
    if len(raw) != size:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    grey = info.colour_type == 0
    filtered = bool(rows[:, 0].any())
    if not filtered:
        if whole:
            return rows[:, 1:] if depth == 8 else _unpack(rows[:, 1:], depth, width, grey=grey)
        span = _nonzero_rows(raw, stride)
        if span is None:
            return Mask((height, width), None, None)
        y0, x0, region = span[0], 0, rows[span[0]:span[1] + 1, 1:]
    else:
        found = _unfilter(raw, rows)
        if found is None:
            return None
        y0, x0, region = found
        if not whole and region.shape[0] == 0:
            return Mask((height, width), None, None)
        if whole:
            out = np.zeros((height, row_bytes), dtype=np.uint8)
            out[y0:y0 + region.shape[0], x0:x0 + region.shape[1]] = region
            return out if depth == 8 else _unpack(out, depth, width, grey=grey)
    if depth < 8:
        per = 8 // depth
        region = _unpack(region, depth, min(region.shape[1] * per, width - x0 * per), grey=grey)
        x0 *= per
    box = _box(region, rows_known=not filtered and depth == 8)
    if box is None:
        return Mask((height, width), None, None)
    return Mask((height, width), (y0 + box[0], y0 + box[1], x0 + box[2], x0 + box[3]),
                region[box[0]:box[1] + 1, box[2]:box[3] + 1])


def _box(region: np.ndarray, *, rows_known: bool = False) -> Box | None:
    """Inclusive bounding box of the non-zero pixels of ``region``, or None (``rows_known``: its first and last
    rows are known to hold some)."""
    if region.size == 0:
        return None
    if rows_known:
        y0, y1 = 0, region.shape[0] - 1
    else:
        rows = region.max(axis=1).nonzero()[0]
        if rows.size == 0:
            return None
        y0, y1 = int(rows[0]), int(rows[-1])
    cols = region[y0:y1 + 1].max(axis=0).nonzero()[0]
    if cols.size == 0:
        return None
    return y0, y1, int(cols[0]), int(cols[-1])


def _nonzero_rows(raw: bytes, stride: int) -> tuple[int, int] | None:
    """The first and last row of ``raw`` (rows of ``stride`` bytes) with a byte that is not zero, or None; looked
    for 8 bytes at a time, then 64."""
    flat = np.frombuffer(raw, dtype=np.uint8)
    n64 = len(raw) // 64
    coarse = (np.frombuffer(raw, dtype=np.uint64, count=n64 * 8) != 0).view(np.uint64) != 0
    tail = flat[n64 * 64:]
    hit = int(coarse.argmax()) if n64 else 0
    if n64 and coarse[hit]:
        first = hit * 64 + int(flat[hit * 64:hit * 64 + 64].nonzero()[0][0])
        if tail.any():
            last = n64 * 64 + int(tail.nonzero()[0][-1])
        else:
            hit = n64 - 1 - int(coarse[::-1].argmax())
            last = hit * 64 + int(flat[hit * 64:hit * 64 + 64].nonzero()[0][-1])
    else:
        found = tail.nonzero()[0]
        if found.size == 0:
            return None
        first, last = n64 * 64 + int(found[0]), n64 * 64 + int(found[-1])
    return first // stride, last // stride


# ---------------------------------------------------------------------------------------------------- unfiltering


def _nonzero_bytes(raw: bytes) -> np.ndarray:
    """Offsets of the bytes of ``raw`` that are not zero, in order: zero 8-byte words are skipped whole."""
    n8 = len(raw) // 8
    words = np.frombuffer(raw, dtype=np.uint64, count=n8)
    busy = (words != 0).nonzero()[0]
    inside = (words[busy].view(np.uint8) != 0).nonzero()[0]
    pos = busy[inside >> 3] * 8 + (inside & 7)
    if len(raw) > n8 * 8:
        pos = np.concatenate([pos, np.frombuffer(raw, dtype=np.uint8)[n8 * 8:].nonzero()[0] + n8 * 8])
    return pos


def _unfilter(raw: bytes, rows: np.ndarray) -> tuple[int, int, np.ndarray] | None:
    """The unfiltered pixels of filtered rows ``rows`` (``(H, 1 + row_bytes)``, filter byte first; one byte per
    pixel or less) as ``(y0, x0, region)``: ``region`` is the block of rows and columns from ``(y0, x0)`` that
    holds every pixel that is not zero. None for an unknown filter type or a file too costly here."""
    height, stride = rows.shape
    width = stride - 1
    kinds = rows[:, 0].astype(np.int8)
    if kinds.max() > _PAETH:
        return None
    pos = _nonzero_bytes(raw)
    ys, xs = np.divmod(pos, stride)
    data_byte = xs != 0
    ys, xs = ys[data_byte], xs[data_byte] - 1  # the non-zero filtered bytes, by row then column
    if ys.size == 0:  # every row, whatever its filter, is zero
        return 0, 0, np.zeros((0, width), dtype=np.uint8)
    # Above y0 and left of x0 every byte is zero, and so every pixel; right of x1 every row repeats its pixel at
    # x1 (Average rows aside: they take up to 8 more pixels to settle).
    y0, x0, x1 = int(ys[0]), int(xs.min()), min(int(xs.max()) + 1, width - 1)
    busy = np.zeros(height, dtype=bool)
    busy[ys] = True
    kinds[(kinds == _PAETH) & ~busy] = _UP  # an all-zero Paeth row repeats the row above, as an all-zero Up row
    sequential = kinds >= _AVERAGE
    sequential[:y0] = False
    seq_rows = sequential.nonzero()[0]
    if seq_rows.size:
        if (kinds[seq_rows] == _AVERAGE).any():
            x1 = width - 1
        plain = ~sequential[ys]  # sequential rows first count as None rows of zeros
        ys, xs = ys[plain], xs[plain]
    end = y0
    if ys.size:
        first, part = _running_sum(rows, kinds, ys, xs, x0, x1)
        end = first + part.shape[0]
    if seq_rows.size:
        run_end = _run_ends(kinds, seq_rows)
        end = max(end, int(run_end.max()))
    region = np.zeros((end - y0, x1 - x0 + 1), dtype=np.uint8) if seq_rows.size or not ys.size or first > y0 \
        else None
    if ys.size:
        if region is None:
            region = part
        else:
            region[first - y0:first - y0 + part.shape[0]] = part
    if seq_rows.size and not _fix_sequential(rows, kinds, seq_rows, run_end, y0, x0, region):
        return None
    if x1 < width - 1 and region[:, -1].any():  # right of x1, rows repeat their last pixel
        wide = np.empty((region.shape[0], width - x0), dtype=np.uint8)
        wide[:, :region.shape[1]] = region
        wide[:, region.shape[1]:] = region[:, -1:]
        region = wide
    return y0, x0, region


def _run_ends(kinds: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For rows ``at``: the row after the Up rows that follow each (the end of its run)."""
    height = kinds.shape[0]
    starts = (kinds != _UP).nonzero()[0]
    following = np.searchsorted(starts, at, side="right")
    return np.where(following < starts.size, starts[np.minimum(following, starts.size - 1)], height)


def _running_sum(rows: np.ndarray, kinds: np.ndarray, ys: np.ndarray, xs: np.ndarray, x0: int, x1: int
                 ) -> tuple[int, np.ndarray]:
    """The pixels of the None, Sub and Up rows, whose non-zero bytes are at ``(ys, xs)`` (sequential rows count
    as None rows of zeros), in columns ``x0..x1``: ``(first, block)``, the block of rows from ``first`` on that
    holds all that are not zero."""
    height = rows.shape[0]
    r0, r1 = int(ys[0]), int(ys[-1])
    window = rows[r0:r1 + 1, 1 + x0:2 + x1]
    # g: per row, the differences from the left neighbour that it adds (Sub: its bytes themselves).
    kind = kinds[r0:r1 + 1]
    subs = (kind == _SUB).nonzero()[0]
    if subs.size == kind.size:
        g = np.ascontiguousarray(window)
    else:
        g = np.empty_like(window)
        g[:, 0] = window[:, 0]
        np.subtract(window[:, 1:], window[:, :-1], out=g[:, 1:])
        g[subs] = window[subs]
        seq = (kind >= _AVERAGE).nonzero()[0]
        if seq.size:
            g[seq] = 0
    total = cv2.integral(g)  # (h + 1, w + 1) int32: total[i, j] = sum of g[:i, :j]
    up = kinds[r0:] == _UP
    if not up.any():  # every row stands alone: its pixels are its own row of the sum (mod 256)
        return r0, np.subtract(total[1:, 1:], total[:-1, 1:]).astype(np.uint8)
    # Each row from r0 on: the sum of g over the rows since its run's start (its last row that is not Up).
    lines = np.arange(r0, height)
    start = np.maximum.accumulate(np.where(up, r0, lines))
    h = r1 - r0 + 1
    hi = np.minimum(lines + 1 - r0, h)
    lo = np.minimum(start - r0, h)
    live = (hi != lo).nonzero()[0]
    last = int(live[-1]) + 1
    return r0, np.subtract(total[hi[:last], 1:], total[lo[:last], 1:]).astype(np.uint8)


def _fix_sequential(rows: np.ndarray, kinds: np.ndarray, seq_rows: np.ndarray, run_end: np.ndarray, y0: int,
                    x0: int, region: np.ndarray) -> bool:
    """Decode the Average and Paeth rows ``seq_rows`` of ``region`` (rows from y0, columns from x0), in order,
    each from the finished row above, and add each to the Up rows of its run (summed from a row of zeros).

    Rows are handled as runs of equal pixels (starts, values): the row above is the block's row (as the running
    sum wrote it) plus the sequential row that starts its run, if any; the new row comes from the events where its
    bytes are not zero or the row above changes. False when that takes more than ``_MAX_STEPS`` steps."""
    width = region.shape[1]
    kind_of = kinds.tolist()
    seq = seq_rows.tolist()
    run_of = dict(zip(seq, run_end.tolist()))
    run_start = np.maximum.accumulate(np.where(kinds == _UP, 0, np.arange(kinds.size))).tolist()
    block = rows[seq_rows, 1 + x0:1 + x0 + width]
    at_row, at_col = np.nonzero(block)
    data: dict[int, dict[int, int]] = {y: {} for y in seq}
    for y, col, val in zip(seq_rows[at_row].tolist(), at_col.tolist(), block[at_row, at_col].tolist()):
        data[y][col] = val
    pending = set(seq)
    aboves = [y - 1 for y in seq if y > y0 and y - 1 not in pending]  # rows above that the running sum finished
    written = dict(zip(aboves, _runs(region[np.asarray(aboves, dtype=np.intp) - y0]))) if aboves else {}
    done: dict[int, tuple[list[int], list[int]]] = {}
    steps = 0
    for y in seq:
        if y == y0:
            above = ([0], [0])
        elif y - 1 in done:
            above = done[y - 1]
        else:
            above = written[y - 1]
            start = max(run_start[y - 1], y0)
            if start in done:  # the row above is in the run of Up rows of a sequential row
                above = _add_runs(done[start], above)
        line, used = _step_runs(kind_of[y] == _PAETH, above, data[y], width)
        steps += used
        if steps > _MAX_STEPS:
            return False
        done[y] = line
    counts: list[int] = []
    values: list[int] = []
    for y in seq:
        starts, vals = done[y]
        counts += [hi - lo for lo, hi in zip(starts, starts[1:] + [width])]
        values += vals
    lines = np.repeat(np.asarray(values, dtype=np.uint8), counts).reshape(len(seq), width)
    region[seq_rows - y0] = lines
    spans = [(i, y + 1 - y0, run_of[y] - y0) for i, y in enumerate(seq) if run_of[y] > y + 1]
    if spans:  # the Up rows after each sequential row: all at once
        targets = np.concatenate([np.arange(lo, hi) for _, lo, hi in spans])
        sources = np.repeat([i for i, _, _ in spans], [hi - lo for _, lo, hi in spans])
        region[targets] += lines[sources]
    return True


def _runs(block: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Rows as runs of equal pixels: per row (starts, values), the first start 0."""
    at_row, at_col = np.nonzero(block[:, 1:] != block[:, :-1])
    cols = (at_col + 1).tolist()
    vals = block[at_row, at_col + 1].tolist()
    firsts = block[:, 0].tolist()
    bounds = np.searchsorted(at_row, np.arange(block.shape[0] + 1)).tolist()
    return [([0] + cols[lo:hi], [first] + vals[lo:hi]) for first, lo, hi in zip(firsts, bounds, bounds[1:])]


def _add_runs(a: tuple[list[int], list[int]], b: tuple[list[int], list[int]]) -> tuple[list[int], list[int]]:
    """The runs of the sum (mod 256) of two rows given as runs."""
    out_s: list[int] = []
    out_v: list[int] = []
    i = j = 0
    for x in sorted(set(a[0]) | set(b[0])):
        while i + 1 < len(a[0]) and a[0][i + 1] <= x:
            i += 1
        while j + 1 < len(b[0]) and b[0][j + 1] <= x:
            j += 1
        v = (a[1][i] + b[1][j]) & 255
        if not out_v or v != out_v[-1]:
            out_s.append(x)
            out_v.append(v)
    return out_s, out_v


def _step_runs(paeth: bool, above: tuple[list[int], list[int]], data: dict[int, int], width: int
               ) -> tuple[tuple[list[int], list[int]], int]:
    """One Paeth or Average row as runs, from the runs of the row above and its non-zero bytes ``{col: byte}``;
    and the steps taken.

    A step is taken where the row's byte is not zero or the row above changes; in between a Paeth pixel repeats
    its left neighbour, and an Average pixel ``(left + above) >> 1`` settles on ``above`` or ``above - 1`` within
    8 more steps and is then repeated."""
    if paeth:
        return _paeth_runs(above, data)
    a_starts, a_vals = above
    events = sorted(set(a_starts).union(data))
    out_s: list[int] = []
    out_v: list[int] = []
    a = i = steps = 0
    last = len(a_starts) - 1
    for k, x in enumerate(events):
        while i < last and a_starts[i + 1] <= x:
            i += 1
        b = a_vals[i]
        c = (a_vals[i - 1] if i else 0) if a_starts[i] == x else b
        d = data.get(x, 0)
        if paeth:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            a = (d + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        else:
            a = (d + ((a + b) >> 1)) & 255
        steps += 1
        if not out_v or a != out_v[-1]:
            out_s.append(x)
            out_v.append(a)
        if not paeth:  # towards b until settled or the next event
            stop = events[k + 1] if k + 1 < len(events) else width
            at = x + 1
            while at < stop:
                v = (a + b) >> 1
                if v == a:
                    break
                a = v
                out_s.append(at)
                out_v.append(a)
                at += 1
                steps += 1
    return (out_s, out_v), steps


def _paeth_runs(above: tuple[list[int], list[int]], data: dict[int, int]) -> tuple[tuple[list[int], list[int]], int]:
    """:func:`_step_runs` for a Paeth row with some non-zero bytes. Where the bytes are zero and the pixel to the
    left equals the one above it, the Paeth predictor picks the pixel above: so the row repeats the row above up
    to its first non-zero byte, and again from the first event after its last where the two rows agree."""
    a_starts, a_vals = above
    cols = sorted(data)
    first, final = cols[0], cols[-1]
    j = bisect_left(a_starts, first)  # runs of the row above that start before the first non-zero byte
    out_s, out_v = a_starts[:j], a_vals[:j]
    a = a_vals[j - 1] if j else 0
    i, last, steps = max(j - 1, 0), len(a_starts) - 1, 0
    for x in sorted(set(a_starts[j:]).union(cols)):
        while i < last and a_starts[i + 1] <= x:
            i += 1
        b = a_vals[i]
        c = (a_vals[i - 1] if i else 0) if a_starts[i] == x else b
        if x > final and a == c:  # from here on the row above again
            if b != out_v[-1]:
                out_s.append(x)
                out_v.append(b)
            out_s += a_starts[i + 1:]
            out_v += a_vals[i + 1:]
            break
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        a = (data.get(x, 0) + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        steps += 1
        if not out_v or a != out_v[-1]:
            out_s.append(x)
            out_v.append(a)
    return (out_s, out_v), steps


@lru_cache(maxsize=8)
def _unpack_table(depth: int, grey: bool) -> np.ndarray:
    """Byte -> its 8/depth pixels, most significant first; grey values scaled to 0-255 as PIL does (2-bit x85,
    4-bit x17), 1-bit grey as 0/1 (PIL's mode 1 as uint8) and palette indices as they are."""
    per = 8 // depth
    shifts = np.arange(per - 1, -1, -1) * depth
    table = (np.arange(256)[:, None] >> shifts) & ((1 << depth) - 1)
    if grey and depth in (2, 4):
        table = table * (255 // ((1 << depth) - 1))
    return table.astype(np.uint8)


def _unpack(packed: np.ndarray, depth: int, width: int, *, grey: bool) -> np.ndarray:
    if depth == 1:
        return np.unpackbits(packed, axis=1, count=width)
    return _unpack_table(depth, grey)[packed].reshape(packed.shape[0], packed.shape[1] * (8 // depth))[:, :width]
