"""Benchmark: wall time of ``savflow --help`` and ``savflow COMMAND --help`` against ``python -c pass``.

Each measurement is a fresh process of the installed ``savflow`` script (next to this interpreter, else
``python -m savflow.pipelines.cli``), run ``--repeat`` times after one warm-up run; the median and the best are
printed, with the median of ``python -c pass`` (the interpreter's own start, the baseline) measured in the same
run, interleaved so that a machine busy with something else slows both alike. Target: every median under
0.3 s. Which modules each command imports is checked in ``tests/unit/test_cli_imports.py``, not timed there.

    .venv/bin/python benchmarks/bench_cli.py [--repeat 7] [--target 0.3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ["", "run-local", "stage", "materialize", "train", "launch-train", "infer", "plan-shards", "evaluate",
            "compile", "submit", "schedule", "doctor"]


def savflow_command() -> list[str]:
    script = Path(sys.executable).with_name("savflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "savflow.pipelines.cli"]


def wall_s(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (default: %(default)s)")
    parser.add_argument("--target", type=float, default=0.3, help="seconds a median must stay under")
    args = parser.parse_args()

    base = [sys.executable, "-c", "pass"]
    cmds = {name or "(top)": [*savflow_command(), *([name] if name else []), "--help"] for name in COMMANDS}
    baseline: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for argv in [base, *cmds.values()]:
        wall_s(argv)  # warm-up: page cache, .pyc files
    for _ in range(args.repeat):
        for name, argv in cmds.items():
            baseline.append(wall_s(base))
            times[name].append(wall_s(argv))

    base_med = statistics.median(baseline)
    print(f"{'command':<14} {'median s':>9} {'best s':>8} {'- pass s':>9} {'x pass':>7}")
    print(f"{'python -c pass':<14} {base_med:9.3f} {min(baseline):8.3f} {0.0:9.3f} {1.0:7.1f}")
    slow = []
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<14} {med:9.3f} {min(values):8.3f} {med - base_med:9.3f} {med / base_med:7.1f}")
        if med >= args.target:
            slow.append(name)
    print(f"target: every median < {args.target:.2f} s: " + ("met" if not slow else f"missed by {', '.join(slow)}"))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
