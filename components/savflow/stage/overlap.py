"""The three phases of staging one video, overlapped across videos: while video *i* is built (decoded and
encoded, on the CPUs), video *i+1*'s inputs are fetched and video *i-1* is published, each in a background
thread, so object-store latency hides behind the CPU work.

A failure in any phase is handed to ``on_failure`` and the run goes on with the next video; the run itself
stops only on an exception that is no video's fault (KeyboardInterrupt, a bug), after which nothing is left
running and no fetched input is left on disk.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable


@dataclass(frozen=True)
class Phases:
    """What to do with one video in each phase, and what to do with a fetched input that will not be built."""

    fetch: Callable[[str], Any]
    build: Callable[[str, Any], Any]
    publish: Callable[[str, Any], Any]
    discard: Callable[[Any], None]


def run_overlapped(videos: list[str], phases: Phases, *, attempt: Callable[[str, Callable[[], Any]], tuple[bool, Any]],
                   published: Callable[[str, Any], None]) -> None:
    """Stage ``videos`` in order. ``attempt(video, step)`` runs one phase and returns ``(ok, result)``,
    reporting a failure itself; ``published(video, result)`` is called for each video whose publication
    succeeded."""
    pipe = ThreadPoolExecutor(2, thread_name_prefix="stage-pipeline")
    fetching: Future | None = None
    publishing: tuple[str, Future] | None = None

    def settle(video: str, future: Future) -> None:
        ok, result = attempt(video, future.result)
        if ok:
            published(video, result)

    try:
        for i, video in enumerate(videos):
            if fetching is None:
                fetching = pipe.submit(phases.fetch, video)
            current, fetching = fetching, None
            if i + 1 < len(videos):
                fetching = pipe.submit(phases.fetch, videos[i + 1])
            ok, fetched = attempt(video, current.result)
            if not ok:
                continue
            ok, built = attempt(video, partial(phases.build, video, fetched))
            if not ok:
                continue
            if publishing is not None:
                settle(*publishing)
            publishing = (video, pipe.submit(phases.publish, video, built))
        if publishing is not None:
            settle(*publishing)
    finally:
        if fetching is not None:
            fetching.cancel()
            if not fetching.cancelled() and fetching.exception() is None:
                phases.discard(fetching.result())
        pipe.shutdown(wait=True)
