"""``savflow run-local``: a whole pipeline on this machine with ``kfp.local`` and local storage.

The same KFP components run as subprocesses (``kfp.local.SubprocessRunner``), the PyTorchJob is replaced by a
local ``torchrun`` of the same worker (``train_backend=local``), and every URI is a local path under the work
directory. Without data parameters it runs the demo: a generated SA-V-format data set (moving textured objects
with exact masks), the tiny SAM 2.1 config, and a seeded random-initialisation starting checkpoint; with
:class:`savflow.pipelines.local_data.OwnData` the same on an imported folder of your own videos.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from savflow.common import storage
from savflow.pipelines.local_data import OwnData, experiment_of, has_import, prepare_own_data

log = logging.getLogger(__name__)

TINY_MODEL = "sam2.1_hiera_tiny128"
TINY_TRAIN = "sam2.1_tiny128_sav_finetune"


@dataclass(frozen=True)
class DemoSize:
    """How much the demo generates and trains; the defaults fit in about ten minutes on 2 cores."""

    train_videos: int = 8
    val_videos: int = 4
    frames: int = 48
    objects: int = 2
    epochs: int = 10
    seed: int = 1  # seeds 0, 1, 2 measured: +4.0, +17.1, +22.8 J&F points (README, The local run)


DEMO_MARKER = "demo.json"


def prepare_demo(workdir: Path, size: DemoSize) -> dict[str, Any]:
    """Generate the raw splits and the starting checkpoint under ``workdir``; returns the pipeline parameters.

    ``{workdir}/raw/demo.json`` records the size, written after the data: a re-run with the same size reuses the
    data (and the stage step then finds every video complete); data without the record (an interrupted
    generation) is generated again; another size in the same work directory is refused, since the staged data
    and the experiment there belong to the first one.
    """
    from savflow.common import demo_data  # numpy: only when demo data is made, not for `savflow --help`
    from savflow.train.init_weights import write_random_init_checkpoint

    raw = workdir / "raw"
    raw_train, raw_val = raw / "train", raw / "val"
    wanted = json.dumps(asdict(size), sort_keys=True)
    marker = raw / DEMO_MARKER
    if marker.exists() and marker.read_text() != wanted:
        raise ValueError(f"{workdir} holds a demo of another size ({marker.read_text()}); use another --workdir")
    if has_import(workdir):
        raise ValueError(f"{workdir} holds your own imported data (run-local --data); use another --workdir for "
                         f"the demo")
    if not marker.exists():
        storage.delete(str(raw))
        res = 128
        demo_data.write_raw_train_split(str(raw_train), demo_data.SyntheticSpec(
            num_videos=size.train_videos, num_frames=size.frames, height=res, width=res,
            num_objects=size.objects, seed=size.seed, first_index=1))
        # held-out videos in the train format: staging writes their masks, and their manual annotations give the
        # evaluation its SA-V size buckets
        demo_data.write_raw_train_split(str(raw_val), demo_data.SyntheticSpec(
            num_videos=size.val_videos, num_frames=size.frames, height=res, width=res, num_objects=size.objects,
            seed=size.seed + 1, first_index=1001))
        storage.write_text(str(marker), wanted)
    init = workdir / "checkpoints" / "init.pt"
    if not init.exists():
        write_random_init_checkpoint(TINY_MODEL, str(init), seed=size.seed)
    return {
        "raw_train": str(raw_train),
        "raw_val": str(raw_val),
        "staged_train": str(workdir / "staged" / "train"),
        "staged_val": str(workdir / "staged" / "val"),
        "experiment_dir": str(workdir / "exp" / "demo"),
        "init_checkpoint": str(init),
        "train_config": TINY_TRAIN,
        "model_config": TINY_MODEL,
        "epochs": size.epochs,
        "seed": size.seed,
        "train_backend": "local",
        "gpus_per_node": 0,
        "stage_shards": 2,
        "infer_shards": 2,
        "infer_device": "cpu",
    }


def demo_params(name: str, workdir: Path, size: DemoSize | None, data: OwnData | None = None) -> dict[str, Any]:
    """Base parameters for ``name``: the fine-tune gets the whole generated set (or the imported one); the
    recurring evaluation reuses what a fine-tune run left in the same work directory (staged val split and
    experiment, the demo's or your own data's)."""
    if name == "sav-finetune":
        return prepare_own_data(workdir, data) if data else prepare_demo(workdir, size or DemoSize())
    staged_val = workdir / "staged" / "val"
    if not staged_val.exists():
        raise FileNotFoundError(f"{staged_val}: nothing staged yet; run `savflow run-local` (sav-finetune) with "
                                f"--workdir {workdir} first")
    return {"staged_val": str(staged_val), "experiment_dir": str(experiment_of(workdir)),
            "model_config": TINY_MODEL, "infer_shards": 2, "infer_device": "cpu"}


def declared_params(name: str) -> dict[str, str]:
    """The pipeline's parameter names and KFP types, from its compiled YAML."""
    from savflow.pipelines.compile import COMPILED_DIR
    from savflow.pipelines.kfp_client import read_package

    return read_package(COMPILED_DIR / f"{name}.yaml").parameter_types


def required_params(name: str) -> list[str]:
    """The parameters of ``name`` that have no default."""
    from savflow.pipelines.compile import COMPILED_DIR

    doc = next(yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text()))
    return [k for k, v in doc["root"]["inputDefinitions"]["parameters"].items() if not v.get("isOptional")]


def run_pipeline(name: str, params: dict[str, Any], pipeline_root: Path, log_dir: Path | None = None) -> Any:
    """Run the named pipeline, built without cluster settings, with ``kfp.local``'s subprocess runner in this
    Python environment. With ``log_dir``, what kfp.local and the tasks print goes to a log file per task there
    and the console shows a line per task (:mod:`savflow.pipelines.local_console`); else all of it to stdout."""
    import importlib

    from kfp import local

    from savflow.pipelines.compile import PIPELINES

    # kfp.local runs the iterations of a ParallelFor at the same time; one thread each keeps two inference
    # shards from fighting over the cores (torch would start one thread per core in each). The training step's
    # local torchrun sets its own share.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Every task runs in this very environment on purpose; kfp warns about the image name once per task.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom",
                            category=RuntimeWarning)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    module = importlib.import_module(PIPELINES[name][0])
    pipeline = module.build(cluster=False)
    # kfp.local indents a task's output by swapping builtins.print in and out (logging_utils.indented_print);
    # from tasks running in parallel threads the swaps interleave and an indenting print is left behind
    print_before = builtins.print
    try:
        return _run(pipeline, name, params, log_dir)
    finally:
        builtins.print = print_before


def _run(pipeline: Any, name: str, params: dict[str, Any], log_dir: Path | None) -> Any:
    """Call ``pipeline`` with ``params``, its output routed to ``log_dir`` (see :func:`run_pipeline`)."""
    from savflow.pipelines.compile import COMPILED_DIR

    if log_dir is None:
        return pipeline(**params)
    from savflow.pipelines.local_console import LocalConsole, planned_tasks, routed

    spec = next(yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text()))  # the same tasks as built here
    total = planned_tasks(spec, params)
    print(f"{name}: {total} tasks; their output: {log_dir}/ (run-local --verbose shows it all here)", flush=True)
    console = LocalConsole(log_dir, sys.stdout, total=total)
    try:
        with routed(console):
            return pipeline(**params)
    finally:
        console.close()


def eval_dirs(experiment_dir: str, since: float) -> list[str]:
    """Evaluation outputs under a local experiment directory written after ``since`` (a ``time.time()``), by
    path; none for a bucket (each evaluate step logs its output URI)."""
    if storage.is_gcs(experiment_dir):
        return []
    root = storage.join(experiment_dir, "eval")
    found = []
    for name in storage.list_prefix(root):
        if name.endswith("/metrics.json") and "/pred/" not in name:
            mtime = storage.local_path(storage.join(root, name)).stat().st_mtime
            if mtime >= since:
                found.append(storage.join(root, name[: -len("/metrics.json")]))
    return sorted(found)


def summarize(name: str, experiment_dir: str, pipeline_root: Path, started: float) -> str:
    """What the user reads at the end: J&F of each evaluation of this run and where the files are."""
    seconds = time.time() - started
    lines = [f"{name} finished in {seconds / 60:.1f} min ({seconds:.0f} s)"]
    for directory in eval_dirs(experiment_dir, started):
        scores = json.loads(storage.read_text(storage.join(directory, "metrics.json")))
        label = directory.rsplit("/", 1)[-1]
        lines.append(f"  {label:<10} J&F {scores['J&F']:6.2f} (J {scores['J']:6.2f}, F {scores['F']:6.2f})   "
                     f"{directory}/metrics.json")
    lines.append(f"  KFP artifacts (Metrics, Markdown, HTML) under {pipeline_root}")
    return "\n".join(lines)


@dataclass(frozen=True)
class LocalRun:
    output: Any
    summary: str
    params: dict[str, Any]


def run_local(name: str, workdir: Path, params: dict[str, Any], *, demo: DemoSize | None,
              data: OwnData | None = None, verbose: bool = False) -> LocalRun:
    """Run ``name`` locally; with ``demo`` (or ``data``: your own videos) the demo parameters are the base that
    ``params`` override, except ``train_overrides``, which come after the import's (its stride must stay).
    The tasks' output goes to ``{workdir}/logs/{time}/``, or with ``verbose`` to stdout."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = demo_params(name, workdir, demo, data) if demo or data else {}
    merged = {**base, **params}
    if data and "train_overrides" in base and "train_overrides" in params:
        merged["train_overrides"] = [*base["train_overrides"], *params["train_overrides"]]
    declared = declared_params(name)
    unknown = sorted(set(merged) - set(declared))
    if unknown:
        raise ValueError(f"unknown parameter(s) of {name}: {', '.join(unknown)}")
    missing = sorted(set(required_params(name)) - set(merged))
    if missing:
        raise ValueError(f"{name} needs the parameter(s) {', '.join(missing)} (--param KEY=VALUE)")
    pipeline_root = workdir / "kfp"
    log.debug("running %s locally with %s", name, json.dumps(merged, sort_keys=True))
    log_dir = None if verbose else workdir / "logs" / time.strftime("%Y%m%d-%H%M%S")
    result = run_pipeline(name, merged, pipeline_root, log_dir)
    return LocalRun(result.output, summarize(name, merged["experiment_dir"], pipeline_root, started), merged)
