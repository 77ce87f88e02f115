"""An ordered, bounded parallel map: results in input order, at most ``max_in_flight`` items held at once.

Staging feeds decoded frames (or copied files) through a thread pool and needs them back in order (tar members
are appended sequentially) without ever buffering a whole video, so ``Executor.map`` (which submits every item
up front) does not fit.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], max_in_flight: int) -> Iterator[R]:
    """``fn(item)`` for each item, run in ``pool``, yielded in input order.

    ``items`` is consumed lazily: a new item is taken only while fewer than ``max_in_flight`` results are
    pending. Closing the iterator early cancels what has not started yet.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            while pending and (len(pending) >= max_in_flight or pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
