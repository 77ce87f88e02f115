"""How a ``savflow`` step command ends, the same on every command: bad input is one ``savflow COMMAND: error:``
line on stderr and exit status 2; otherwise each failed unit on stderr, the summary on stdout, and the step's own
status (0 done, 1 finished with failed units)."""

from __future__ import annotations

import sys
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def run_step(command: str, call: Callable[[], T], errors: tuple[type[BaseException], ...],
             outcome: Callable[[T], tuple[Iterable[str], str, int]]) -> int:
    """``call()``; ``outcome(result)`` gives (the failed units' lines, the summary, the exit status)."""
    try:
        result = call()
    except errors as exc:
        print(f"savflow {command}: error: {exc}", file=sys.stderr)
        return 2
    failed, summary, status = outcome(result)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    print(summary)
    return status
