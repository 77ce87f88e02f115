"""The real-size figures that need a GPU, in one run: what to do with the first session lent one (see README.md).

1. Training: ``sam2.1_hiera_b+_sav_finetune`` at 1024 px (8 frames, 3 objects, bf16, batch 1) for ``--train-steps``
   steps on one GPU, through ``savflow train`` itself (torchrun, the sam2 trainer, our worker) on generated staged
   videos at 1280x720 and random weights: seconds per step (median), clips/s and peak GPU memory, from the run's
   ``train_metrics.json``.
2. Inference: ``bench_infer.py``'s CUDA part: SAM 2.1 b+ at 1024 px, bf16, propagation frames/s with 1 and 3
   objects and peak memory, without and then with ``--compile``.

Each part's figures are appended to ``{--out}/gpu_figures.md`` as soon as it ends, so that a run stopped at the
device's time limit still returns what it measured (``tee`` the output into ``$OUT`` for the whole log).

On the device machine (see benchmarks/gpu_wheels.sh for the packages it lacks, carried as ``.whl``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
      PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_session.py --out $OUT 2>&1 |
      tee $OUT/gpu_session.log

``--dry-run`` goes the same way on the CPU at toy size (the tiny config at 128 px, one step; inference at 128 px
without compile): a check of this script and of the carried packages, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # sam2's progress bars would drown the figures in the log
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

B_PLUS_TRAIN = "sam2.1_hiera_b+_sav_finetune"
TINY_TRAIN = "sam2.1_tiny128_sav_finetune"


def _report(out: Path, text: str) -> None:
    print(text, flush=True)
    with open(out / "gpu_figures.md", "a") as fh:
        fh.write(text + "\n")


def environment() -> str:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()}, torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}), GPU: {gpu}, {os.cpu_count()} CPUs")


def train_figures(work: Path, steps: int, dry_run: bool) -> str:
    """Run ``savflow train`` for ``steps`` steps (one video a step) and summarise its train_metrics.json."""
    from savflow.common.demo_data import SyntheticSpec, write_staged_train_split

    size = dict(height=128, width=128) if dry_run else dict(height=720, width=1280)
    staged = work / "staged"
    # 40 frames at stride 4: 10 annotated, enough for the config's 8-frame clips
    write_staged_train_split(str(staged), SyntheticSpec(num_videos=steps, num_frames=40, num_objects=3, seed=3,
                                                        **size))
    config = TINY_TRAIN if dry_run else B_PLUS_TRAIN
    cmd = [sys.executable, "-m", "savflow.pipelines.cli", "train", "--config", config,
           "--train-frames", str(staged / "JPEGImages_24fps"), "--train-annotations", str(staged / "annotations"),
           "--experiment-dir", str(work / "exp"), "--epochs", "1", "--phases-per-epoch", "1", "--batch-size", "1",
           "--workers", "2", "--device", "cpu" if dry_run else "cuda", "--nproc-per-node", "1",
           "--override", "dataset.multiplier=1"]  # one step a video
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    m = json.loads((work / "exp" / "train_metrics.json").read_text())
    memory = m.get("gpu_max_memory_bytes")
    where = " (dry run, CPU)" if dry_run else " at 1024 px, 1 GPU"
    peak = f"peak GPU memory {memory / 2**30:.1f} GiB" if memory else "no GPU memory figure (not on a GPU)"
    return (f"- train {config}{where}: {m.get('steps')} steps, {m.get('seconds_per_step') or float('nan'):.3f} s "
            f"per step (median), {m.get('samples_per_second') or float('nan'):.2f} clips/s, {peak}; the whole "
            f"command {wall:.0f} s (start-up, model build, data copy included)")


def infer_figures(out: Path, frames: int, runs: int, dry_run: bool) -> None:
    """``bench_infer.bench_gpu``'s lines, one report line per compile setting as it finishes."""
    import io
    from contextlib import redirect_stdout

    import bench_infer

    if dry_run:  # the CPU path of the same functions, at toy size
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            bench_infer.bench_cpu(1, 8, 1)
        _report(out, "- infer (dry run, CPU, tiny config): " + " | ".join(buffer.getvalue().split("\n")[1:3]))
        return
    for compiled in (False, True):
        buffer = io.StringIO()
        started = time.perf_counter()
        with redirect_stdout(buffer):
            bench_infer.bench_gpu(frames, warm_up=2, runs=runs, compile_modes=(compiled,))
        lines = [line.strip() for line in buffer.getvalue().splitlines() if line.strip()]
        _report(out, f"- infer: {' '.join(lines)} ({time.perf_counter() - started:.0f} s with model build"
                     f"{' and compile' if compiled else ''})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_figures.md (the device's $OUT)")
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--infer-frames", type=int, default=150)
    parser.add_argument("--infer-runs", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-infer", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy size: checks the script, measures nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _report(out, environment())
    status = 0
    with tempfile.TemporaryDirectory(prefix="savflow-gpu-") as tmp:
        for name, skip, part in (
                ("train", args.skip_train, lambda: _report(out, train_figures(Path(tmp) / "train",
                                                                              args.train_steps, args.dry_run))),
                ("infer", args.skip_infer, lambda: infer_figures(out, args.infer_frames, args.infer_runs,
                                                                 args.dry_run))):
            if skip:
                continue
            try:
                part()
            except Exception as exc:  # noqa: BLE001  (one part failing must not lose the other's figures)
                _report(out, f"- {name}: FAILED: {type(exc).__name__}: {exc}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
