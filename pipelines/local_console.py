"""The console of ``savflow run-local``: a line per task as it starts and ends, the pipeline's progress and the
long tasks' own, and each task's whole output in a log file of its own.

kfp.local writes everything to ``sys.stdout`` (``kfp/local/logging_utils.py`` ``local_logger_context``: its
logging handler is a ``StreamHandler(sys.stdout)`` made when a task starts; ``subprocess_task_handler.py``
``run_local_subprocess`` prints the task's merged stdout/stderr line by line), and runs the iterations of a
ParallelFor in threads (``orchestrator/enhanced_dag_orchestrator.py``), each task start to end in one thread.
:class:`LocalConsole` stands in for ``sys.stdout`` during the run and routes each line by the thread that
writes it: between that thread's "Executing task 'NAME'" and "Task 'NAME' finished with status S" lines, into
``{log_dir}/{NN}-{NAME}.log``; otherwise into ``{log_dir}/pipeline.log``.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

from savflow.common.progress import duration

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '(?P<name>[^']+)'")
FINISHED = re.compile(r"Task '(?P<name>[^']+)' finished with status (?P<status>[A-Z]+)")
# a line of savflow.common.progress (stage, infer, evaluate, train): "DESC: 3/8 videos (38%), ..."
PROGRESS = re.compile(r"(?P<text>[\w .-]+: \d+/\d+ \w+ \(\d+%\).*)$")
TAIL_LINES = 30
BAR_WIDTH = 20


@contextmanager
def routed(console: "LocalConsole") -> Iterator[None]:
    """``sys.stdout``, ``sys.stderr`` and the root logger's stream handlers (the parent's own logging, and
    kfp.local's orchestrator lines between tasks) all write to ``console`` for the duration."""
    import logging
    import sys

    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and any(h.stream is c for c in consoles)]
    streams = [h.setStream(console) for h in handlers]
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = console
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)


def bar(done: int, total: int) -> str:
    """``[#####---------------] 3/12 tasks``; the total grows when more tasks ran than planned."""
    total = max(total, done, 1)
    filled = BAR_WIDTH * done // total
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total} tasks"


@dataclass
class _Task:
    name: str
    log: Path
    started: float
    file: TextIO
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    progress: str = ""


class LocalConsole(io.TextIOBase):
    """A text stream for ``sys.stdout`` while kfp.local runs a pipeline (see the module docstring)."""

    def __init__(self, log_dir: Path, console: TextIO, *, total: int, clock: Callable[[], float] = time.monotonic,
                 progress_every: float = 10.0) -> None:
        super().__init__()
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._console = console
        self._total = total
        self._clock = clock
        self._progress_every = progress_every
        self._lock = threading.Lock()
        self._pending: dict[int, str] = {}
        self._tasks: dict[int, _Task] = {}
        self._count = 0
        self.done = 0
        self.failed: list[tuple[str, Path, list[str]]] = []
        self._last_progress = 0.0
        self._pipeline_log = open(log_dir / "pipeline.log", "a", encoding="utf-8")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            data = self._pending.pop(thread, "") + text
            *lines, rest = data.split("\n")
            if rest:
                self._pending[thread] = rest
            for line in lines:
                self._line(thread, line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            for task in self._tasks.values():
                task.file.flush()
            self._pipeline_log.flush()

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            for thread, rest in list(self._pending.items()):
                self._line(thread, rest)
            self._pending.clear()
        super().close()  # flushes
        for task in self._tasks.values():
            task.file.close()
        self._tasks.clear()
        self._pipeline_log.close()

    def _say(self, text: str) -> None:
        self._console.write(text + "\n")
        self._console.flush()

    def _line(self, thread: int, line: str) -> None:
        plain = ANSI.sub("", line)
        task = self._tasks.get(thread)
        started = STARTED.search(plain)
        if started and task is None:
            self._start(thread, started["name"], plain)
            return
        finished = FINISHED.search(plain)
        if task is not None:
            task.file.write(plain + "\n")
            if finished and finished["name"] == task.name:
                self._finish(thread, task, finished["status"])
            else:
                task.tail.append(plain)
                self._maybe_progress(task, plain)
            return
        self._pipeline_log.write(plain + "\n")

    def _start(self, thread: int, name: str, first: str) -> None:
        self._count += 1
        log = self.log_dir / f"{self._count:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.log"
        task = _Task(name, log, self._clock(), open(log, "w", encoding="utf-8"))
        task.file.write(first + "\n")
        self._tasks[thread] = task
        self._say(f"{bar(self.done, self._total)}  {name}: started")

    def _finish(self, thread: int, task: _Task, status: str) -> None:
        del self._tasks[thread]
        task.file.close()
        self.done += 1
        took = duration(self._clock() - task.started)
        if status == "SUCCESS":
            self._say(f"{bar(self.done, self._total)}  {task.name}: done in {took}")
            return
        tail = list(task.tail)
        self.failed.append((task.name, task.log, tail))
        self._say(f"{bar(self.done, self._total)}  {task.name}: {status} after {took}; its last {len(tail)} "
                  f"log lines:")
        for text in tail:
            self._say(f"    {text}")
        self._say(f"  the whole log: {task.log}")

    def _maybe_progress(self, task: _Task, plain: str) -> None:
        found = PROGRESS.search(plain)
        if not found:
            return
        task.progress = found["text"]
        now = self._clock()
        if now - self._last_progress >= self._progress_every or "done in" in task.progress:
            self._last_progress = now
            text = task.progress.strip()
            self._say(f"{'':{BAR_WIDTH + 2}}    {text if text.startswith(task.name + ':') else f'{task.name}: {text}'}")


def planned_tasks(spec: dict, params: dict) -> int:
    """How many tasks a run of the compiled pipeline ``spec`` (IR as a dict) will execute with ``params``: each
    loop counted as many times as the ``num_shards`` input of the task that makes its items (once when that is
    not known before the run), and of the branches of a condition the largest."""
    components = spec["components"]

    def value(source: dict, scope: dict) -> object:
        if "runtimeValue" in source:
            return source["runtimeValue"].get("constant")
        return scope.get(source.get("componentInputParameter"))

    def count(dag: dict, scope: dict) -> int:
        tasks = dag["tasks"]
        branches = [t for t in tasks.values() if t.get("triggerPolicy", {}).get("condition")]
        total = sum(one(t, tasks, scope) for t in tasks.values() if t not in branches)
        return total + max((one(t, tasks, scope) for t in branches), default=0)

    def one(task: dict, siblings: dict, scope: dict) -> int:
        component = components[task["componentRef"]["name"]]
        if "dag" not in component:
            return 1
        inner = {k: value(v, scope) for k, v in task.get("inputs", {}).get("parameters", {}).items()}
        times = 1
        items = task.get("parameterIterator", {}).get("items", {}).get("inputParameter")
        if items:
            source = task["inputs"]["parameters"].get(items, {}).get("taskOutputParameter", {})
            producer = siblings.get(source.get("producerTask", ""), {})
            shards = producer.get("inputs", {}).get("parameters", {}).get("num_shards")
            n = value(shards, scope) if shards else None
            times = int(n) if isinstance(n, (int, float)) and n > 0 else 1
        return times * count(component["dag"], inner)

    defaults = {k: v.get("defaultValue") for k, v in spec["root"].get("inputDefinitions", {})
                .get("parameters", {}).items()}
    return count(spec["root"]["dag"], {**defaults, **params})
