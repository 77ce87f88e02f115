"""``savflow evaluate``: score predicted masks against SA-V ground truth and write results.csv + metrics.json.

Only the standard library at the top: :func:`run` imports the evaluator (numpy, OpenCV, zlib-ng) when the
command runs, so ``savflow --help`` and the other commands never load them.
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {"evaluate": "SA-V J&F of predicted masks against ground truth (same numbers as the SA-V benchmark)"}
EXAMPLES = {
    "evaluate": ["savflow evaluate --gt-root gs://my-bucket/sav/val/Annotations_6fps "
                 "--pred-root gs://my-bucket/exp/ft-1/pred --output gs://my-bucket/exp/ft-1/eval --benchmark sav"],
}


def _flag(text: str) -> bool:
    """A boolean option's value: true/false, yes/no, 1/0."""
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    from savflow.common.benchmarks import BENCHMARKS
    from savflow.common.cpus import available_cpus

    parser = subparsers.add_parser(
        "evaluate",
        help=COMMANDS["evaluate"],
        description=(
            "Score predicted masks against ground truth with the SA-V / DAVIS J&F (region IoU and boundary "
            "F-measure, mean over objects, x100). Both roots are storage URIs (gs://bucket/prefix or a local "
            "path) of the folder that holds the video folders, in the SA-V layout {video}/{obj:03d}/{frame}.png "
            "or the DAVIS palette layout {video}/{frame}.png; the predictions use the ground truth's layout. "
            "Writes results.csv and metrics.json under --output, and results.csv in the official tool's format into "
            "--pred-root (where it writes it)."),
    )
    parser.add_argument("--gt-root", required=True,
                        help="ground-truth masks, e.g. gs://bucket/sav/val/Annotations_6fps")
    parser.add_argument("--pred-root", required=True, help="predicted masks, same layout as the ground truth")
    parser.add_argument("--output", required=True, help="where results.csv and metrics.json go (URI)")
    parser.add_argument("--video-list", help="URI of a text file of video ids, one per line (default: all "
                                             "videos of the ground truth)")
    parser.add_argument("--strict", action="store_true",
                        help="fail when a video has no predictions (default: skip and list it)")
    parser.add_argument("--metrics-json", metavar="URI",
                        help="also write metrics.json to this URI (as the official evaluator's option)")
    parser.add_argument("--max-failures", type=int, default=0, metavar="M",
                        help="videos with bad input (unreadable or wrong-size PNGs, ...) left out and listed "
                             "before the evaluation fails (default 0: any fails it, as the official benchmark)")
    parser.add_argument("--do-not-skip-first-last", nargs="?", const=True, default=None, type=_flag,
                        metavar="BOOL",
                        help="also score the first and last annotated frames (SA-V val/test and DAVIS skip them; "
                             "default: the --benchmark's rule, else skip); =true/false for callers that always "
                             "pass a value (an Argo template)")
    parser.add_argument("--benchmark", choices=BENCHMARKS, metavar="NAME",
                        help="score with that benchmark's protocol and record it in metrics.json (one of "
                             f"{', '.join(BENCHMARKS)}); predictions made with other inference options are refused")
    parser.add_argument("--num-workers", "--workers", dest="num_workers", type=int, default=available_cpus(),
                        help="(--workers as on every command; --num-workers is kept) worker processes, one video at a time each (default: %(default)s, the CPUs here)")
    parser.add_argument("--size-buckets",
                        help="URI of a JSON {video: {obj: bucket}} (e.g. SA-V masklet_size_bucket) for scores "
                             "per bucket")
    parser.add_argument("--annotations-root",
                        help="staged annotations/ ({video}_manual.json): scores per SA-V size bucket from them")
    parser.add_argument("--frames-root", help="the videos' JPEG frames: also write the HTML overlay page")
    parser.add_argument("--report-dir", help="where report.md (and report.html) go (default: --output)")
    parser.add_argument("--title", default="SA-V evaluation", help="title of the report pages")
    parser.add_argument("--quiet", action="store_true", help="no per-object table and no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from savflow.common import storage
    from savflow.common.savformat import SavFormatError
    from savflow.evaluate.evaluator import EvaluationError
    from savflow.evaluate.results import summary_text
    from savflow.evaluate.run import evaluate_to

    try:
        done = evaluate_to(args.gt_root, args.pred_root, args.output, video_list=args.video_list or "",
                           annotations_root=args.annotations_root or "", size_buckets_uri=args.size_buckets or "",
                           frames_root=args.frames_root or "", report_dir=args.report_dir or "", title=args.title,
                           num_workers=args.num_workers, strict=args.strict,
                           skip_first_last=None if args.do_not_skip_first_last is None
                           else not args.do_not_skip_first_last, progress=not args.quiet,
                           max_failures=args.max_failures, metrics_json=args.metrics_json or "",
                           benchmark=args.benchmark or "")
    except (EvaluationError, SavFormatError, storage.StorageError, OSError) as exc:
        print(f"savflow evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(done.result, table=not args.quiet))
    print("Saved " + ", ".join(done.files.values()))
    return 0
