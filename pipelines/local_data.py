"""``savflow run-local --data DIR --format F``: the local fine-tune on a folder of your own videos.

The folder (DAVIS / MOSE / LVOS, YouTube-VOS, SA-V val, or an annotation tool's frames + masks) is imported once
into ``{workdir}/imported`` with :func:`savflow.importers.run.import_dataset`, the same code as ``savflow
import``; the import is the raw split of both pipeline splits, so staging copies its JPEGs and masks as they are
and its annotations keep the stride they were written with. The last videos (by name) are held out for the
evaluation, the others trained on, through the pipeline's video lists, and the import's recorded overrides
(``ann_every``, ``frames_fps``) go to training, and so to the pipeline's validation step, which checks the
training videos against the tiny config before anything is staged. Everything else is the demo's: the tiny
config, a seeded random-initialisation checkpoint, CPU, local torchrun.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from savflow.common import savformat, storage
from savflow.importers.layout import RECORD

log = logging.getLogger(__name__)

IMPORTED = "imported"
# the benchmark whose protocol (prompting, scoring) the evaluations of an imported format follow
# (savflow.common.benchmarks); the frames + masks of an annotation tool keep the pipeline's defaults (objects may
# appear later)
FORMAT_BENCHMARK = {"davis": "davis", "ytvos": "ytvos", "sav-val": "sav"}
LISTS = "lists"
EXPERIMENT = "data"
DEMO_EXPERIMENT = "demo"


@dataclass(frozen=True)
class OwnData:
    """What to import and how long to train. ``holdout``: videos kept for the evaluation (None: a fifth of
    them, at least one); ``fps``: the source frames' rate when the format's default is wrong (MOSE, LVOS)."""

    source: str
    format: str
    holdout: int | None = None
    fps: float | None = None
    epochs: int = 10
    seed: int = 0


def imported_root(workdir: Path) -> Path:
    return workdir / IMPORTED


def has_import(workdir: Path) -> bool:
    return (imported_root(workdir) / RECORD).exists()


def experiment_of(workdir: Path) -> Path:
    """The work directory's experiment: its own data's, once something was imported there, else the demo's."""
    return workdir / "exp" / (EXPERIMENT if has_import(workdir) else DEMO_EXPERIMENT)


def import_once(workdir: Path, data: OwnData) -> dict[str, Any]:
    """The import record of ``data`` under the work directory, importing it first when there is none.

    The record is written after the videos, so an interrupted import is done again; an import of another folder
    or format is refused (the staged data and the experiment there are made from it): a re-run reuses the
    import, and with it the staged videos and the finished training. Delete ``{workdir}/imported`` to import
    the folder again after changing it."""
    from savflow.importers.layout import read_record
    from savflow.importers.run import import_dataset

    dest = str(imported_root(workdir))
    source = str(Path(data.source).resolve()) if not storage.is_gcs(data.source) else data.source
    record = read_record(dest)
    if record is not None:
        if (record.get("source"), record.get("format")) != (source, data.format):
            raise ValueError(f"{workdir} holds an import of {record.get('source')} ({record.get('format')}); use "
                             f"another --workdir, or delete {dest} to import {source} there")
        log.info("run-local: reusing the import of %s in %s (delete it to import again)", source, dest)
        return record
    result = import_dataset(data.format, source, dest, fps=data.fps)
    for problem in result.problems:
        log.warning("run-local: not imported: %s", problem)
    log.info("%s", result.summary())
    record = read_record(dest)
    assert record is not None
    return record


def split_videos(videos: list[str], holdout: int | None) -> tuple[list[str], list[str]]:
    """(train, held out): the last ``holdout`` videos by name are held out (default: a fifth, at least 1)."""
    videos = sorted(videos)
    count = max(1, len(videos) // 5) if holdout is None else holdout
    if len(videos) < 2:
        raise ValueError(f"{len(videos)} video(s) imported: run-local holds out at least one video for the "
                         f"evaluation and trains on the others, so it needs two or more")
    if not 1 <= count < len(videos):
        raise ValueError(f"--holdout {count}: must be at least 1 and leave a video to train on "
                         f"({len(videos)} imported)")
    return videos[:-count], videos[-count:]


def prepare_own_data(workdir: Path, data: OwnData) -> dict[str, Any]:
    """Import ``data`` (once), write the train and held-out video lists and the starting checkpoint; returns the
    pipeline parameters."""
    from savflow.pipelines.run_local import DEMO_MARKER, TINY_MODEL, TINY_TRAIN
    from savflow.train.init_weights import write_random_init_checkpoint

    if (workdir / "raw" / DEMO_MARKER).exists():
        raise ValueError(f"{workdir} holds the demo's data; use another --workdir for your own")
    record = import_once(workdir, data)
    train, held_out = split_videos(record.get("videos") or [], data.holdout)
    lists = workdir / LISTS
    storage.write_text(str(lists / "train.txt"), savformat.format_video_list(train))
    storage.write_text(str(lists / "val.txt"), savformat.format_video_list(held_out))
    log.info("run-local: training on %d videos, evaluating on %d held out (%s)", len(train), len(held_out),
             ", ".join(held_out))
    init = workdir / "checkpoints" / "init.pt"
    if not init.exists():
        write_random_init_checkpoint(TINY_MODEL, str(init), seed=data.seed)
    root = str(imported_root(workdir))
    return {
        "benchmark": FORMAT_BENCHMARK.get(data.format, ""),
        "raw_train": root,
        "raw_val": root,
        "staged_train": str(workdir / "staged" / "train"),
        "staged_val": str(workdir / "staged" / "val"),
        "experiment_dir": str(workdir / "exp" / EXPERIMENT),
        "init_checkpoint": str(init),
        "train_video_list": str(lists / "train.txt"),
        "val_video_list": str(lists / "val.txt"),
        "train_config": TINY_TRAIN,
        "model_config": TINY_MODEL,
        "train_overrides": list(record["train"]["overrides"]),
        # the import keeps every frame and says its stride; a rate of 1 keeps every annotated frame whatever it is
        "sample_rate": 1,
        "epochs": data.epochs,
        "seed": data.seed,
        "train_backend": "local",
        "gpus_per_node": 0,
        "stage_shards": 2,
        "infer_shards": 2,
        "infer_device": "cpu",
    }
