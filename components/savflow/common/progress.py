"""Progress of a long step (videos staged, frames segmented, steps trained) for the person reading it.

On a terminal it is a tqdm bar. Anywhere else (``kubectl logs``, the KFP log viewer, a log file of the local run)
a bar redrawn with carriage returns is unreadable, so there it is a plain log line every ``interval`` seconds
and one at the end, each with the count, the rate and the time left::

    stage 0-of-1: 12/40 videos (30%), 0.52 videos/s, 54 s left
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, TextIO

log = logging.getLogger("savflow.progress")

INTERVAL_ENV = "SAVFLOW_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def interval_seconds() -> float:
    """Seconds between two log lines where there is no terminal (``SAVFLOW_PROGRESS_SECONDS``, default 30)."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_INTERVAL
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds") from None


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: short and unambiguous in a log line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def summary(desc: str, done: int, total: int | None, unit: str, elapsed: float, note: str = "",
            final: bool = False) -> str:
    """One progress line: count (and share of the total), rate, time left, or the time taken once ``final``."""
    units = unit if done == 1 else f"{unit}s"
    count = f"{done}/{total} {units} ({100 * done / total:.0f}%)" if total else f"{done} {units}"
    parts = [f"{desc}: {count}"]
    rate = done / elapsed if elapsed > 0 else 0.0
    if rate > 0:
        parts.append(f"{rate:.3g} {unit}s/s" if rate >= 1 else f"{1 / rate:.3g} s/{unit}")
    if final:
        parts.append(f"{'done' if not total or done >= total else 'ended'} in {duration(elapsed)}")
    elif total and rate > 0:
        parts.append(f"{duration((total - done) / rate)} left")
    if note:
        parts.append(note)
    return ", ".join(parts)


class Progress:
    """Counts the units of one long step; use as a context manager and call :meth:`update` per unit."""

    def __init__(self, total: int | None, desc: str, unit: str, *, enabled: bool = True,
                 stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.note = ""
        self._clock = clock
        self._start = self._last = clock()
        self._interval = interval_seconds() if interval is None else interval
        stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._enabled = enabled
        if enabled and stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1, note: str | None = None) -> None:
        """``n`` more units done; ``note`` (e.g. "3 failed") is shown from now on."""
        self.done += n
        if note is not None:
            self.note = note
        if self._bar is not None:
            self._bar.update(n)
            if note is not None:
                self._bar.set_postfix_str(note)
            return
        now = self._clock()
        if self._enabled and now - self._last >= self._interval and not (self.total and self.done >= self.total):
            self._last = now
            log.info("%s", self.line())

    def line(self, final: bool = False) -> str:
        """The progress line as of now."""
        return summary(self.desc, self.done, self.total, self.unit, self._clock() - self._start, self.note, final)

    def close(self) -> None:
        """The bar is closed; without a terminal the last line says how far it got and how long it took."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._enabled:
            log.info("%s", self.line(final=True))
        self._enabled = False
