"""One training process: ``python -m savflow.train.worker`` alone, or one of many under ``torchrun``.

The sam2 ``training/train.py`` entry cannot run in a PyTorchJob (it sets ``MASTER_ADDR``, ``RANK`` and
``WORLD_SIZE`` itself and does multi-node only through SLURM), so each process here:

1. reads its place in the job from the torchrun variables (:mod:`savflow.train.distenv`) and sets its thread
   count to ``OMP_NUM_THREADS`` or an even share of the node's cores;
2. decides how to start from what the experiment directory holds (``--resume auto|never|URI``,
   :func:`savflow.common.checkpoints.plan_resume`: ``auto`` continues only checkpoints made by this same run,
   :mod:`savflow.train.run_key`) and logs the decision;
3. gets the node's local copy of the staged data (local rank 0 fetches, the others wait) and its own copies of
   the checkpoint to resume from or the initial weights (``--checkpoint``), from any storage URI;
4. composes the Hydra config (ours and sam2's resolve by name), points it at those local files and at a private
   scratch directory whose trainer ``save_dir`` holds only the checkpoint chosen in step 2 (the sam2 trainer
   silently resumes from any ``checkpoint.pt`` it finds there), adapts it to the device (CPU: gloo, no AMP, no
   pinned memory, and :mod:`savflow.train.cpu_memmeter`), and runs
   ``instantiate(cfg.trainer, _recursive_=False).run()`` with :class:`savflow.train.trainer.SavflowTrainer`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from savflow.common import checkpoints, deployment, secrets, storage
from savflow.common.cpus import available_cpus
from savflow.common.devices import AUTO, DEVICES, resolve_device
from savflow.train import data, distenv, run_key

log = logging.getLogger("savflow.train")

TRAINER_CLASS = "savflow.train.trainer.SavflowTrainer"
SCRATCH_ENV = deployment.SCRATCH_ENV
LOG_HANDLER = "savflow-train-worker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's options; ``savflow train`` adds its own on top of these."""
    parser.add_argument("--config", required=True,
                        help="Hydra training config by name, e.g. sam2.1_hiera_b+_sav_finetune or "
                             "sam2.1_tiny128_sav_finetune")
    parser.add_argument("--train-frames", required=True, help="URI of the staged JPEGImages_24fps/ root")
    parser.add_argument("--train-annotations", required=True,
                        help="URI of the staged annotations/ root ({video}_manual.json)")
    parser.add_argument("--file-list", "--video-list", dest="file_list",
                        help="URI of a video list (one id per line); default: every annotated video (--video-list as "
                             "on every command; --file-list, sam2's name, is kept)")
    parser.add_argument("--experiment-dir", required=True,
                        help="URI where checkpoints, train_metrics.json and config.yaml go")
    parser.add_argument("--checkpoint", help="URI of initial weights (a SAM 2 release .pt or one of ours); "
                                             "default: random initialisation")
    parser.add_argument("--resume", default=checkpoints.RESUME_AUTO,
                        help="auto: continue from the newest complete checkpoint in --experiment-dir, if any; "
                             "never: start fresh and refuse an experiment with checkpoints; or the URI of a "
                             "trainer checkpoint to start from (default: auto)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the experiment's existing checkpoints and start over: with --resume never or "
                             "URI, any; with --resume auto, only those made by another run (other config, "
                             "overrides, data or starting weights)")
    parser.add_argument("--batch-size", type=int, help="videos per process and step (scratch.train_batch_size)")
    parser.add_argument("--epochs", type=int, help="data epochs (scratch.num_epochs)")
    parser.add_argument("--phases-per-epoch", type=int,
                        help="trainer epochs per data epoch (scratch.phases_per_epoch); each trainer epoch ends "
                             "with a checkpoint, so more phases = less work lost when a job is killed")
    parser.add_argument("--num-workers", "--workers", dest="num_workers", type=int,
                        help="data loader processes per training process (--workers as on every command; "
                             "--num-workers, sam2's name, is kept)")
    parser.add_argument("--seed", type=int, help="trainer.seed_value")
    parser.add_argument("--save-every", type=int, default=1,
                        help="upload a checkpoint every N trainer epochs, and always after the last (default 1)")
    parser.add_argument("--keep-last", type=int, default=3, help="complete checkpoints kept (default 3)")
    parser.add_argument("--device", choices=DEVICES, default=AUTO,
                        help="auto: cuda when available, else cpu")
    parser.add_argument("--scratch-dir",
                        help=f"local working directory (default ${SCRATCH_ENV} or the system temp dir)")
    parser.add_argument("--data-timeout", type=float, default=3600.0,
                        help="seconds a process waits for its node's copy of the data (default 3600)")
    parser.add_argument("--override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="Hydra overrides, e.g. scratch.num_frames=4 scratch.base_lr=1e-4")


def option_dests() -> list[str]:
    """The destinations of the worker's options, in the order :func:`add_arguments` declares them."""
    return [a.dest for a in build_parser()._actions if a.option_strings and a.dest != "help"]  # noqa: SLF001


def argv(values: Mapping[str, Any], *, skip_defaults: bool = False) -> list[str]:
    """The worker command line for ``values`` (option destinations to values), from the one declaration of
    the options: None is left out (and, with ``skip_defaults``, a value equal to the option's default), a
    flag is given when true, a list becomes one option with several values."""
    out: list[str] = []
    for action in build_parser()._actions:  # noqa: SLF001 - argparse has no public view of its options
        if not action.option_strings or action.dest == "help" or action.dest not in values:
            continue
        value = values[action.dest]
        if value is None or (skip_defaults and value == action.default):
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            if value:
                out.append(flag)
        elif isinstance(value, (list, tuple)):
            if value:
                out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m savflow.train.worker",
                                     description="One SAM 2 training process (run alone or under torchrun).")
    add_arguments(parser)
    return parser


def hydra_overrides(args: argparse.Namespace) -> list[str]:
    """Hydra overrides for the dedicated options, then the free-form ones (which win)."""
    mapping = [("batch_size", "scratch.train_batch_size"), ("epochs", "scratch.num_epochs"),
               ("phases_per_epoch", "scratch.phases_per_epoch"), ("num_workers", "scratch.num_train_workers"),
               ("seed", "trainer.seed_value")]
    out = [f"{key}={getattr(args, dest)}" for dest, key in mapping if getattr(args, dest) is not None]
    return out + list(args.override)


def _register_resolvers() -> None:
    """sam2's config resolvers (``times``, ``divide``, ...), registered once per process."""
    from omegaconf import OmegaConf
    from training.utils.train_utils import register_omegaconf_resolvers

    if not OmegaConf.has_resolver("times"):
        register_omegaconf_resolvers()


def compose_training_config(name: str, overrides: Sequence[str]):
    """The named training config with overrides applied, resolvable (sam2's resolvers registered)."""
    from hydra import compose

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    _register_resolvers()
    return compose(config_name=name, overrides=list(overrides))


def adapt_config(cfg, *, device: str, train_data: data.LocalTrainData, run_dir: Path, init_checkpoint: Path | None,
                 settings: dict[str, Any]) -> None:
    """Point a composed config at this process's files and device, in place."""
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.dataset.img_folder = str(train_data.img_folder)
        cfg.dataset.gt_folder = str(train_data.gt_folder)
        cfg.dataset.file_list_txt = str(train_data.file_list)
        cfg.launcher.experiment_log_dir = str(run_dir)
        trainer = cfg.trainer
        trainer._target_ = TRAINER_CLASS
        trainer.accelerator = device
        trainer.distributed.backend = "nccl" if device == "cuda" else "gloo"
        if device == "cpu":
            trainer.optim.amp.enabled = False
            trainer.data.train.pin_memory = False
        if trainer.checkpoint.get("resume_from") is not None:
            log.warning("ignoring trainer.checkpoint.resume_from=%s: use --resume", trainer.checkpoint.resume_from)
        trainer.checkpoint.resume_from = None
        if init_checkpoint is None:
            trainer.checkpoint.model_weight_initializer = None
        else:
            trainer.checkpoint.model_weight_initializer.state_dict.checkpoint_path = str(init_checkpoint)
        trainer.savflow = _literal(settings)


def _literal(value: Any) -> Any:
    """``value`` with every ``${`` escaped, so that the config keeps its strings as they are: the run key holds
    the overrides as given, and ``+k=${oc.env:TOKEN}`` resolved there would put the token in every checkpoint
    marker (and differ from the key the next run computes)."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_literal(v) for v in value]
    return value


def _configure_logging(env: distenv.DistEnv) -> None:
    """Our own handler on the ``savflow`` logger: the sam2 trainer replaces the root logger's handlers."""
    logger = logging.getLogger("savflow")
    if any(h.get_name() == LOG_HANDLER for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(LOG_HANDLER)
    handler.setFormatter(logging.Formatter(f"%(levelname)s %(asctime)s savflow[rank {env.rank}]: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if env.is_primary else logging.WARNING)
    logger.propagate = False


def _set_threads(env: distenv.DistEnv) -> int:
    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS") or
                  distenv.threads_per_process(available_cpus(), env.local_world_size))
    torch.set_num_threads(threads)
    return threads


def _scratch_root(args: argparse.Namespace) -> Path:
    base = args.scratch_dir or os.environ.get(SCRATCH_ENV) or str(Path(tempfile.gettempdir()) / "savflow-train")
    return Path(base)


@dataclass(frozen=True)
class StartDecision:
    """How a run starts, and what it was decided from: the data as it is now, the composed config (not yet
    pointed at local files) with its overrides, and the run's key."""

    source: data.TrainDataSource
    overrides: list[str]
    cfg: Any
    key: dict[str, Any]
    plan: checkpoints.ResumePlan


class TrainInputError(ValueError):
    """The run cannot start from these inputs (no videos to train on); nothing was trained."""


# what stops a run before it starts, for a one-line error and exit status 2 (bad input)
START_ERRORS = (checkpoints.ExperimentExistsError, TrainInputError, storage.StorageError)


def decide_start(args: argparse.Namespace) -> StartDecision:
    """The resume decision for ``args``; :class:`savflow.common.checkpoints.ExperimentExistsError` when the
    experiment holds checkpoints this run may not continue, :class:`TrainInputError` when there is nothing to
    train on. The launcher and ``savflow train`` call it too, before any process or job starts."""
    source = data.describe_source(args.train_frames, args.train_annotations, args.file_list)
    if not source.videos:
        where = f"the video list {args.file_list}" if args.file_list else \
            f"{args.train_annotations} (no {{video}}_manual.json, and no staged split at {args.train_frames})"
        raise TrainInputError(f"no training videos in {where}")
    overrides = hydra_overrides(args)
    cfg = compose_training_config(args.config, overrides)
    key = run_key.run_key(config_name=args.config, overrides=overrides, cfg=cfg, data=source,
                          init_weights=args.checkpoint)
    plan = checkpoints.plan_resume(args.experiment_dir, args.resume, overwrite=args.overwrite, run_key=key)
    return StartDecision(source, overrides, cfg, key, plan)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Train as one process of the job described by the environment; returns the exit status."""
    secrets.install_log_masking()  # before the sam2 trainer logs the whole environment (savflow.common.secrets)
    distenv.single_process_env(os.environ)
    env = distenv.read_dist_env(os.environ)
    _configure_logging(env)
    try:
        device = resolve_device(args.device).type
    except ValueError as exc:
        log.error("--device: %s", exc)
        return 2
    threads = _set_threads(env)
    log.info("process %d of %d (local %d of %d) on %s, %d threads, master %s:%d", env.rank, env.world_size,
             env.local_rank, env.local_world_size, device, threads, env.master_addr, env.master_port)
    try:
        start = decide_start(args)
    except START_ERRORS as exc:
        log.error("%s", exc)
        return 2
    plan, cfg = start.plan, start.cfg
    log.info("%s", plan.describe(args.experiment_dir))

    scratch = _scratch_root(args)
    train_data = data.prepare_node_data(start.source, scratch=scratch, node_leader=env.is_node_leader,
                                        timeout_s=args.data_timeout)
    run_dir = scratch / "runs" / hashlib.sha256(args.experiment_dir.encode()).hexdigest()[:12] / f"rank{env.rank}"
    shutil.rmtree(run_dir, ignore_errors=True)  # never let the trainer find a stale checkpoint.pt
    (run_dir / "checkpoints").mkdir(parents=True)
    init_checkpoint = None
    if plan.checkpoint is not None:
        storage.download_file(plan.checkpoint, run_dir / "checkpoints" / checkpoints.TRAINER_STATE)
        if args.checkpoint:
            log.info("--checkpoint %s not used: the run resumes from a training checkpoint", args.checkpoint)
    elif args.checkpoint:
        init_checkpoint = storage.download_file(args.checkpoint, run_dir / "init" / "weights.pt")
        log.info("initial weights: %s", args.checkpoint)
    else:
        log.info("initial weights: random initialisation (no --checkpoint)")

    settings = {"experiment_dir": args.experiment_dir, "keep_last": args.keep_last, "save_every": args.save_every,
                "config_name": args.config, "run_key": start.key,
                "resume": {"kind": plan.kind, "checkpoint": plan.checkpoint, "step": plan.step, "epoch": plan.epoch,
                           "existing_step": plan.existing_step, "explicit": plan.explicit}}
    adapt_config(cfg, device=device, train_data=train_data, run_dir=run_dir, init_checkpoint=init_checkpoint,
                 settings=settings)
    return _train(cfg, env=env, device=device, experiment_dir=args.experiment_dir)


def _train(cfg, *, env: distenv.DistEnv, device: str, experiment_dir: str) -> int:
    import torch.distributed as dist
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from savflow.train.cpu_memmeter import cpu_mem_meter

    if env.is_primary:
        resolved = secrets.mask_data(OmegaConf.to_container(cfg, resolve=True))  # an override may hold ${oc.env:..}
        storage.write_text(storage.join(experiment_dir, "config.yaml"), OmegaConf.to_yaml(OmegaConf.create(resolved)))
    try:
        trainer = instantiate(cfg.trainer, _recursive_=False)
        with cpu_mem_meter() if device == "cpu" else contextlib.nullcontext():
            trainer.run()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    log.info("training done; metrics in %s", storage.join(experiment_dir, checkpoints.METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
