"""Kill a step's command with SIGKILL at seeded random points, then compare what a re-run makes with an
uninterrupted run (issue 12, point 3). Used by tests/integration/test_kill_anywhere.py and
benchmarks/bench_reliability.py.

A point is a delay after the start, drawn uniformly between ``lo`` and ``hi`` times the uninterrupted run's
wall time; the whole process tree is killed at once, as a pod's end kills every process in it. A process group
is not enough: torchrun starts each worker in a session of its own
(torch/distributed/elastic/multiprocessing/subprocess_handler/subprocess_handler.py ``_popen``), so killing the
command's group would leave the workers training on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from savflow.common import storage

SAVFLOW = [sys.executable, "-m", "savflow.pipelines.cli"]


@dataclass(frozen=True)
class Timed:
    returncode: int
    seconds: float
    output: str


def run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600) -> Timed:
    """Run ``cmd`` to the end; its exit status, wall time and output."""
    start = time.monotonic()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=dict(env or os.environ), timeout=timeout)
    return Timed(proc.returncode, time.monotonic() - start, proc.stdout + proc.stderr)


def kill_after(cmd: Sequence[str], delay: float, *, env: Mapping[str, str] | None = None,
               until: Callable[[], bool] | None = None, log: Path | None = None) -> bool:
    """Start ``cmd`` in its own process group and SIGKILL the group ``delay`` seconds after the start (or after
    ``until()`` first holds, when given); True when it was still running and so was killed."""
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ),
                                start_new_session=True)
        if until is not None:
            while not until():
                if proc.poll() is not None:
                    return False
                time.sleep(0.05)
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()
            return True
    finally:
        if log:
            out.close()


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it. All are stopped first (SIGSTOP), so none can start another
    or react to a sibling's death while the tree is collected."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            os.kill(current, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        todo += _children().get(current, [])
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def delays(seed: int, trials: int, seconds: float, lo: float = 0.25, hi: float = 0.95) -> list[float]:
    """``trials`` kill points within ``[lo, hi]`` of ``seconds``, from ``seed``."""
    rng = random.Random(seed)
    return [rng.uniform(lo * seconds, hi * seconds) for _ in range(trials)]


def snapshot(root: str, *, skip: Iterable[str] = ("_reports/",),
             volatile: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Every object under ``root`` by name: its bytes, or for the JSON files whose names contain a key of
    ``volatile`` the parsed document without that key's fields (times of day, durations). Names under ``skip``
    are left out."""
    out: dict[str, Any] = {}
    for name in storage.list_prefix(root):
        if name.startswith(tuple(skip)):
            continue
        data = storage.read_bytes(storage.join(root, name))
        fields = next((f for part, f in (volatile or {}).items() if part in name), None)
        if fields is not None:
            doc = json.loads(data)
            out[name] = {k: v for k, v in doc.items() if k not in fields}
        else:
            out[name] = data
    return out


def differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Names present in one snapshot only, or with other contents."""
    return sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
