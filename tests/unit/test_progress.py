"""Progress lines (issue 15, point 2): a bar on a terminal, never a bar redrawn into a log; elsewhere one line
every interval and one at the end, with count, rate and time left."""

from __future__ import annotations

import io
import logging

import pytest

from savflow.common import progress
from savflow.common.progress import Progress, duration, summary


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_summary_line() -> None:
    assert summary("stage 0-of-1", 12, 40, "video", 24.0) == "stage 0-of-1: 12/40 videos (30%), 2 s/video, 56 s left"
    assert summary("infer", 1, None, "video", 0.5) == "infer: 1 video, 2 videos/s"
    assert summary("train", 8, 8, "step", 130.0, final=True) == "train: 8/8 steps (100%), 16.2 s/step, done in 2 min 10 s"
    assert summary("evaluate", 3, 5, "video", 3.0, "1 failed", final=True).endswith("ended in 3 s, 1 failed")


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (61, "1 min 01 s"), (7260, "2 h 01 min")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_log_lines_at_the_interval_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock, stream = _Clock(), io.StringIO()
    caplog.set_level(logging.INFO, logger="savflow.progress")
    with Progress(10, "stage", "video", stream=stream, interval=30, clock=clock) as bar:
        for _ in range(10):
            clock.now += 10
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["stage: 3/10 videos (30%), 10 s/video, 1 min 10 s left",
                     "stage: 6/10 videos (60%), 10 s/video, 40 s left",
                     "stage: 9/10 videos (90%), 10 s/video, 10 s left",
                     "stage: 10/10 videos (100%), 10 s/video, done in 1 min 40 s"]
    assert stream.getvalue() == ""  # no bar where there is no terminal


def test_bar_on_a_terminal_and_no_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = _Tty()
    caplog.set_level(logging.INFO, logger="savflow.progress")
    with Progress(3, "infer", "video", stream=stream) as bar:
        bar.update(3, note="0 failed")
    assert "infer" in stream.getvalue() and "3/3" in stream.getvalue()
    assert not caplog.records


def test_disabled_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="savflow.progress")
    with Progress(3, "infer", "video", enabled=False, stream=_Tty(), interval=0) as bar:
        bar.update(3)
    assert not caplog.records


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_ENV, "5")
    assert progress.interval_seconds() == 5.0
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match="SAVFLOW_PROGRESS_SECONDS='soon'"):
        progress.interval_seconds()
