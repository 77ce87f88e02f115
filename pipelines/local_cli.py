"""``savflow run-local``: the command-line face of :mod:`savflow.pipelines.run_local`.

Only the standard library at the top: :func:`register` and :func:`run` import what they use (see
:mod:`savflow.pipelines.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = {"run-local": "run a whole pipeline on this machine (kfp.local, local storage, local torchrun)"}
EXAMPLES = {
    "run-local": ["savflow run-local", "savflow run-local --workdir /tmp/savflow-demo --epochs 2",
                  "savflow run-local --data DAVIS/ --format davis --workdir davis-local"],
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from savflow.importers.cli import FORMATS
    from savflow.pipelines.run_local import DemoSize

    parser = subparsers.add_parser(
        "run-local", help=COMMANDS["run-local"],
        description="Run sav-finetune (default) or sav-evaluate on this machine with kfp.local's subprocess "
                    "runner. The PyTorchJob becomes a local torchrun of the same worker and every URI a path under "
                    "--workdir. Without --no-demo it first generates a small SA-V-format data set and a random-init "
                    "tiny SAM 2.1 checkpoint and uses the tiny configs (CPU, about ten minutes on 2 cores); "
                    "--param values override any demo parameter. --data DIR --format F runs the same on your own "
                    "videos instead: the folder is imported into --workdir (as savflow import does), the last "
                    "videos by name are held out for the evaluation and the others trained on. sav-evaluate reuses "
                    "a previous fine-tune run's work directory.")
    parser.add_argument("pipeline", nargs="?", default="sav-finetune", choices=["sav-finetune", "sav-evaluate"])
    parser.add_argument("--workdir", type=Path, default=Path("savflow-local"),
                        help="where data, checkpoints, evaluations and KFP artifacts go (default ./savflow-local)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline parameter (repeatable); see the README's parameter table")
    parser.add_argument("--params-file", help="YAML file of pipeline parameters (--param wins)")
    parser.add_argument("--verbose", action="store_true", dest="full_stream",
                        help="print everything kfp.local and the tasks print (default: a line per task here, "
                             "their output in {workdir}/logs/)")
    parser.add_argument("--no-demo", action="store_true",
                        help="do not generate demo data; every required parameter must then be given")
    own = parser.add_argument_group("your own videos (instead of the demo's)")
    own.add_argument("--data", help="a dataset folder (or gs:// URI) to import, train on and evaluate on")
    own.add_argument("--format", choices=FORMATS, help="--data's layout (as savflow import --format)")
    own.add_argument("--holdout", type=int,
                     help="videos held out for the evaluation (default: a fifth, at least 1)")
    own.add_argument("--fps", type=float, help="frame rate of --data's frames (default: the format's)")
    demo = parser.add_argument_group("demo size")
    defaults = DemoSize()
    demo.add_argument("--train-videos", type=int, default=defaults.train_videos)
    demo.add_argument("--val-videos", type=int, default=defaults.val_videos)
    demo.add_argument("--frames", type=int, default=defaults.frames, help="frames per generated video (24 fps)")
    demo.add_argument("--epochs", type=int, default=defaults.epochs,
                      help="training epochs of the tiny model (the demo's or --data's)")
    demo.add_argument("--seed", type=int, default=defaults.seed)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from savflow.pipelines.params import ParamError, load_params_file, parse_assignments, resolve_params
    from savflow.pipelines.local_data import OwnData
    from savflow.pipelines.run_local import DemoSize, declared_params, run_local

    try:
        params = resolve_params(load_params_file(args.params_file) if args.params_file else {},
                                parse_assignments(args.param), declared_params(args.pipeline),
                                file_name=args.params_file or "params file")
    except ParamError as exc:
        print(f"savflow run-local: error: {exc}", file=sys.stderr)
        return 2
    if args.data and (args.no_demo or not args.format):
        print("savflow run-local: error: --data needs --format, and excludes --no-demo", file=sys.stderr)
        return 2
    if not args.data and (args.format or args.holdout is not None or args.fps is not None):
        print("savflow run-local: error: --format, --holdout and --fps go with --data", file=sys.stderr)
        return 2
    data = OwnData(args.data, args.format, holdout=args.holdout, fps=args.fps, epochs=args.epochs,
                   seed=args.seed) if args.data else None
    size = None if args.no_demo or data else DemoSize(train_videos=args.train_videos, val_videos=args.val_videos,
                                                      frames=args.frames, epochs=args.epochs, seed=args.seed)
    try:
        result = run_local(args.pipeline, args.workdir, params, demo=size, data=data,
                           verbose=args.full_stream or args.verbose)
    except (ValueError, FileNotFoundError) as exc:
        print(f"savflow run-local: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # kfp.local's report of a failed task; the task's own log is above
        print(f"savflow run-local: error: {exc}", file=sys.stderr)
        return 1
    print(result.summary)
    return 0
