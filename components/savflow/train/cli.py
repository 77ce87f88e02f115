"""``savflow train``: run the training worker on this machine, in-process or as ``torchrun`` processes.

With ``--nproc-per-node 1`` (the default) the worker runs in this process; with more, this command starts
``torchrun --standalone`` over ``savflow.train.worker`` with the same options, giving each process an even share
of the cores through ``OMP_NUM_THREADS`` (torchrun would otherwise set 1). On a cluster the PyTorchJob runs
``torchrun`` over the worker module itself; this command is the single-node form of the same thing.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from savflow.train import distenv, worker

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune SAM 2 on staged SA-V data (checkpoints to object storage, resumable)",
        description="Fine-tune SAM 2 with the sam2 training stack on staged SA-V data. Checkpoints, "
                    "train_metrics.json and a model-only model.pt per checkpoint go to --experiment-dir; a "
                    "restarted run continues from the newest complete checkpoint (--resume auto).")
    worker.add_arguments(parser)
    parser.add_argument("--nproc-per-node", type=int, default=1,
                        help="training processes on this machine (one per GPU; on CPU each gets a share of "
                             "the cores); more than 1 runs them under torchrun")
    parser.set_defaults(func=handle)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The worker command line equivalent to the parsed options (those that differ from the defaults)."""
    parser = worker.build_parser()
    argv: list[str] = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public view of its options
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            argv.append(flag)
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def torchrun_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={args.nproc_per_node}", "-m", "savflow.train.worker", *worker_argv(args)]


def handle(args: argparse.Namespace) -> int:
    if args.nproc_per_node < 1:
        raise SystemExit("--nproc-per-node must be >= 1")
    if args.nproc_per_node == 1:
        return worker.run(args)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS",
                   str(distenv.threads_per_process(distenv.available_cpus(), args.nproc_per_node)))
    for key in distenv.REQUIRED:  # torchrun sets these for its children; stale values would only confuse
        env.pop(key, None)
    command = torchrun_command(args)
    log.info("running %s", " ".join(command))
    return subprocess.call(command, env=env)
