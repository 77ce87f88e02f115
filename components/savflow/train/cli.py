"""``savflow train``: run the training worker on this machine, in-process or as ``torchrun`` processes.

With ``--nproc-per-node 1`` (the default) the worker runs in this process; with more, this command starts
``torchrun --standalone`` over ``savflow.train.worker`` with the same options, giving each process an even share
of the cores through ``OMP_NUM_THREADS`` (torchrun would otherwise set 1). On a cluster the PyTorchJob runs
``torchrun`` over the worker module itself; this command is the single-node form of the same thing.

Only the standard library at the top; the worker module declares the options and imports torch, Hydra and sam2
only when it trains (see :mod:`savflow.pipelines.cli`).
"""

from __future__ import annotations

import argparse
import os
import sys

COMMANDS = {"train": "fine-tune SAM 2 on staged SA-V data (checkpoints to object storage, resumable)"}
EXAMPLES = {
    "train": ["savflow train --config sam2.1_tiny128_sav_finetune --train-frames /data/staged/JPEGImages_24fps "
              "--train-annotations /data/staged/annotations --experiment-dir /data/exp --epochs 2"],
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from savflow.train import worker

    parser = subparsers.add_parser(
        "train", help=COMMANDS["train"],
        description="Fine-tune SAM 2 with the sam2 training stack on staged SA-V data. Checkpoints, "
                    "train_metrics.json and a model-only model.pt per checkpoint go to --experiment-dir; a "
                    "restarted run continues from the newest complete checkpoint (--resume auto).")
    worker.add_arguments(parser)
    parser.add_argument("--nproc-per-node", type=int, default=1,
                        help="training processes on this machine (one per GPU; on CPU each gets a share of "
                             "the cores); more than 1 runs them under torchrun")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from savflow.train import torchrun, worker

    if args.nproc_per_node < 1:
        print("savflow train: error: --nproc-per-node must be >= 1", file=sys.stderr)
        return 2
    try:  # the inputs are checked here, so that a bad one is one line, not a traceback from every process
        worker.decide_start(args)
    except worker.START_ERRORS as exc:
        print(f"savflow train: error: {exc}", file=sys.stderr)
        return 2
    if args.nproc_per_node == 1:
        return worker.run(args)
    # a thread count the user exported is theirs to keep; otherwise each process gets its share of the cores
    user_threads = {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]} if os.environ.get("OMP_NUM_THREADS") else {}
    try:
        torchrun.run(worker.argv({d: getattr(args, d) for d in worker.option_dests()}, skip_defaults=True),
                     args.nproc_per_node, env=user_threads, emit=print)
    except torchrun.TorchrunFailed as exc:
        return exc.code
    return 0
