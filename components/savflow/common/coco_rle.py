"""Checking COCO compressed RLE strings without decoding them, all the strings of a file at once.

A SA-V ``*_manual.json`` holds one compressed RLE string per object and annotated frame (600 strings, 190,000
characters in tests/data/sav_sample/sav_000001_manual.json). pycocotools decodes whatever it is given, so the
reader checks each string first, against the format of pycocotools ``maskApi.c`` ``rleFrString``: a run length is
a group of characters ``c - 48`` in 0..63 with 5 data bits each (least significant first), bit 0x20 set on every
character of the group but its last, bit 0x10 of the last one the sign; from the fourth run on, a run is stored
as its difference from the run two before it. A string is sound when its characters and groups are well formed and
its runs are not negative and add up to the frame's pixels.

Read character by character in Python that took 0.4 us a character, 26 times as long as loading the JSON; here all
the strings of a file are one pass of array operations. A group of more than 7 characters (35 bits) is refused:
pycocotools writes at most 7 for any frame below 2**34 pixels, and the bound keeps every sum within int64.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NOT_RLE = "is not COCO compressed RLE"
NEGATIVE = "has a negative run length"
_MAX_GROUP = 7
_CHUNK = 1 << 20  # characters checked at once: about 40 MB of arrays


def compressed_problems(texts: Sequence[str], height: int, width: int) -> list[str | None]:
    """For each compressed RLE string, what is wrong with it as the mask of a ``height`` x ``width`` frame (the
    words that follow "counts"), or None when it is sound."""
    total = height * width
    problems: list[str | None] = [None if text.isascii() else NOT_RLE for text in texts]
    at = [i for i, problem in enumerate(problems) if problem is None]
    bad: list[bool] = []
    low: list[int] = []
    high: list[int] = []
    sums: list[int] = []
    for part in _chunks([texts[i] for i in at], _CHUNK):
        for into, got in zip((bad, low, high, sums), _runs_summary(part)):
            into += got
    for k, i in enumerate(at):
        if bad[k]:
            problems[i] = NOT_RLE
        elif low[k] < 0:
            problems[i] = NEGATIVE
        elif high[k] > total:
            problems[i] = f"has a run of {high[k]} pixels, more than the frame's {height} x {width} = {total}"
        elif sums[k] != total:
            problems[i] = f"runs cover {sums[k]} pixels, not the frame's {height} x {width} = {total}"
    return problems


def _chunks(texts: list[str], most: int) -> list[list[str]]:
    """``texts`` in runs of about ``most`` characters, so that the arrays of a large file stay small."""
    parts: list[list[str]] = [[]]
    size = 0
    for text in texts:
        if size >= most:
            parts.append([])
            size = 0
        parts[-1].append(text)
        size += len(text)
    return parts


def _runs_summary(texts: list[str]) -> tuple[list[bool], list[int], list[int], list[int]]:
    """Per ASCII string: whether it is malformed, and its smallest run, largest run and sum of runs (0, 0, 0 for
    an empty string)."""
    n = len(texts)
    lengths = np.fromiter(map(len, texts), np.int64, n)
    ends = np.cumsum(lengths)  # one past each string's last character
    chars = np.frombuffer("".join(texts).encode("ascii"), np.uint8) - np.uint8(48)  # (below 48 wraps above 63)
    bad = np.zeros(n, bool)
    low, high, sums = (np.zeros(n, np.int64) for _ in range(3))
    if chars.size == 0:
        return bad.tolist(), low.tolist(), high.tolist(), sums.tolist()
    bad[np.searchsorted(ends, np.flatnonzero(chars > 63), side="right")] = True
    closes = (chars & 0x20) == 0
    last = ends[lengths > 0] - 1  # each string's last character
    bad[np.searchsorted(ends, last[~closes[last]], side="right")] = True  # the string stops inside a group
    closes[last] = True  # a group ends with its string in any case (the string is then bad)
    group_end = np.flatnonzero(closes)
    group_start = np.concatenate(([0], group_end[:-1] + 1))
    size = group_end - group_start + 1
    string = np.searchsorted(ends, group_end, side="right")  # the string of each run
    bad[string[size > _MAX_GROUP]] = True
    value = (chars[group_start] & 0x1F).astype(np.int64)
    for place in range(1, _MAX_GROUP):  # most groups are one or two characters long
        longer = np.flatnonzero(size > place)
        if longer.size == 0:
            break
        value[longer] += (chars[group_start[longer] + place] & 0x1F).astype(np.int64) << (5 * place)
    negative = np.flatnonzero((chars[group_end] & 0x10) != 0)
    value[negative] -= np.int64(1) << (5 * np.minimum(size[negative], _MAX_GROUP))
    first = np.searchsorted(string, np.arange(n))  # each string's first run
    count = np.diff(np.append(first, string.size))
    some = count > 0
    runs = _undelta(value, string, first, some)
    low[some] = np.minimum.reduceat(runs, first[some])
    high[some] = np.maximum.reduceat(runs, first[some])
    sums[some] = np.add.reduceat(runs, first[some])
    return bad.tolist(), low.tolist(), high.tolist(), sums.tolist()


def _undelta(value: np.ndarray, string: np.ndarray, first: np.ndarray, some: np.ndarray) -> np.ndarray:
    """Run lengths from the stored values (``string``: each value's string; ``first``: each string's first value;
    ``some``: the strings with values). Run k of a string, from k = 3 on, is value k plus run k - 2: so a run is
    the sum of every second value back to value 1 or 2, a difference of two running sums taken every second value
    (over all strings, value 0 of each left out), less what they held before the string."""
    gap = value.copy()
    gap[first[some]] = 0
    running = np.empty_like(value)
    running[0::2] = np.cumsum(gap[0::2])
    running[1::2] = np.cumsum(gap[1::2])
    before = np.concatenate(([0, 0], running))  # before[i + 2] = running[i]; running "at" -1 and -2 is 0
    odd = ((np.arange(value.size) - first[string]) & 1).astype(bool)
    runs = running - np.where(odd, before[first + 1][string], before[first][string])
    runs[first[some]] = value[first[some]]
    return runs
