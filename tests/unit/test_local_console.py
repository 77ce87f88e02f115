"""The local run's console (issue 15, point 1): a line per task start and end with the pipeline's progress, the
long tasks' progress lines, each task's output in its own log file, and on a failure its last 30 lines and the
log's path. The input lines are kfp.local's own formats (``kfp/local/task_dispatcher.py``,
``logging_utils.py``: task names quoted in cyan, statuses in green/red)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import yaml

from savflow.pipelines.local_console import LocalConsole, bar, planned_tasks

ROOT = Path(__file__).resolve().parents[2]


def _kfp(name: str, status: str | None = None) -> str:
    task = f"\x1b[96m'{name}'\x1b[0m"
    if status is None:
        return f"12:00:00.000 - INFO - Executing task {task}\n"
    colour = "92" if status == "SUCCESS" else "91"
    return f"12:00:09.000 - INFO - Task {task} finished with status \x1b[{colour}m{status}\x1b[0m\n"


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_tasks_in_threads_each_get_their_own_log(tmp_path: Path) -> None:
    screen, clock = io.StringIO(), _Clock()
    out = LocalConsole(tmp_path, screen, total=3, clock=clock, progress_every=0)
    out.write("12:00:00.000 - INFO - Running pipeline: \x1b[95m'sav-finetune'\x1b[0m\n")

    def task(name: str, lines: int) -> None:
        out.write(_kfp(name))
        for i in range(lines):
            out.write(f"    {name} line {i}\n")
        out.write(f"    2026-12-01 12:00:05,000 INFO savflow.progress: {name} 0-of-1: 2/4 videos (50%), 1 s/video, "
                  "2 s left\n")
        out.write(_kfp(name, "SUCCESS"))

    threads = [threading.Thread(target=task, args=(n, 50)) for n in ("stage-shard", "stage-shard-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clock.now = 12.0
    out.write(_kfp("train"))
    out.write("    Traceback (most recent call last):\n    ValueError: no training videos\n")
    clock.now = 24.0
    out.write(_kfp("train", "FAILURE"))
    out.close()

    text = screen.getvalue()
    logs = sorted(p.name for p in tmp_path.glob("*.log"))
    assert logs == ["01-stage-shard.log", "02-stage-shard-2.log", "03-train.log", "pipeline.log"] or \
        logs == ["01-stage-shard-2.log", "02-stage-shard.log", "03-train.log", "pipeline.log"]
    own = (tmp_path / next(n for n in logs if n.endswith("-stage-shard.log"))).read_text()
    assert own.count("stage-shard line") == 50 and "stage-shard-2" not in own  # no line of the other thread
    assert "\x1b[" not in own
    assert "Running pipeline" in (tmp_path / "pipeline.log").read_text()
    assert "stage-shard: started" in text and "stage-shard: done in 0 s" in text
    assert "stage-shard: stage-shard 0-of-1: 2/4 videos (50%), 1 s/video, 2 s left" in text
    assert "[##################--] 3/3 tasks" not in text  # the bar counts finished tasks
    assert f"{bar(3, 3)}  train: FAILURE after 12 s; its last 2 log lines:" in text
    assert "    ValueError: no training videos" in text and f"the whole log: {tmp_path / '03-train.log'}" in text
    assert "line 7" not in text  # the tasks' output stays in their logs
    assert out.failed and out.failed[0][0] == "train"


def test_bar() -> None:
    assert bar(0, 4) == "[--------------------] 0/4 tasks"
    assert bar(3, 4) == "[###############-----] 3/4 tasks"
    assert bar(5, 4) == "[####################] 5/5 tasks"


def test_planned_tasks_expand_the_loops_by_their_shard_counts() -> None:
    spec = next(yaml.safe_load_all((ROOT / "pipelines" / "compiled" / "sav-finetune.yaml").read_text()))
    one = planned_tasks(spec, {"stage_shards": 1, "infer_shards": 1})
    # each more staging shard is two more stage tasks (train and val); each more inference shard one more infer
    # task in each of the two evaluations (the starting checkpoint's and the fine-tuned one's)
    assert planned_tasks(spec, {"stage_shards": 3, "infer_shards": 1}) == one + 2 * 2
    assert planned_tasks(spec, {"stage_shards": 1, "infer_shards": 4}) == one + 2 * 3


def test_routed_takes_the_root_logger_along_and_gives_it_back(tmp_path: Path) -> None:
    import logging
    import sys

    from savflow.pipelines.local_console import routed

    screen = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig makes it
    original = handler.stream
    root = logging.getLogger()
    others, root.handlers = root.handlers, [handler]  # only the handler a CLI run has
    try:
        console = LocalConsole(tmp_path, screen, total=1)
        with routed(console):
            logging.getLogger("kfp.local").warning("selector applied")
            sys.stdout.write("between tasks\n")
            assert sys.stdout is console
        console.close()
        assert sys.stdout is not console and handler.stream is original
    finally:
        root.handlers = others
    assert screen.getvalue() == ""
    assert (tmp_path / "pipeline.log").read_text() == "selector applied\nbetween tasks\n"
