"""``savflow infer`` and ``savflow plan-shards``: argv in, the plain functions of this package out.

Only the standard library at the top: the handlers import the work (torch and sam2 come with
:mod:`savflow.infer.infer`), so ``savflow --help`` and the other commands never load them.
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "infer": "run SAM 2 video object segmentation over one shard of videos",
    "plan-shards": "split the videos into balanced shards for the inference fan-out",
}
EXAMPLES = {
    "infer": ["savflow infer --checkpoint gs://my-bucket/exp/ft-1/checkpoints/latest/model.pt "
              "--model-config configs/sam2.1/sam2.1_hiera_b+.yaml --frames gs://my-bucket/sav/val/JPEGImages_24fps "
              "--masks gs://my-bucket/sav/val/Annotations_6fps --output gs://my-bucket/exp/ft-1/pred --benchmark sav"],
    "plan-shards": ["savflow plan-shards --frames gs://my-bucket/sav/val/JPEGImages_24fps "
                    "--masks gs://my-bucket/sav/val/Annotations_6fps --num-shards 8"],
}


def _roots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", required=True, metavar="URI",
                        help="JPEGImages_24fps-style root: {video}/{frame:05d}.jpg below it; for a split written by "
                             "`savflow stage`, its {split}/JPEGImages_24fps (videos are then materialized and "
                             "checked against their completion markers, in either staging layout)")
    parser.add_argument("--masks", required=True, metavar="URI",
                        help="Annotations_6fps-style root: {video}/{obj:03d}/{frame:05d}.png below it")
    parser.add_argument("--video-list", metavar="F",
                        help="file or URI with one video id per line (default: every video under the roots)")


def register(subparsers: argparse._SubParsersAction) -> None:
    from savflow.common.benchmarks import BENCHMARKS
    from savflow.common.devices import AUTO, DEVICES
    from savflow.infer.defaults import SCORE_THRESHOLD

    p = subparsers.add_parser(
        "infer", help=COMMANDS["infer"],
        description="Prompt SAM 2 with each object's mask, propagate through the video and write one binary "
                    "PNG per object and annotated frame under --output ({video}/{obj:03d}/{frame:05d}.png, "
                    "the evaluator's --pred-root). Videos finished with the same checkpoint, options and inputs "
                    "are skipped on a re-run (predictions made differently are refused, see --overwrite); a "
                    "failing video "
                    "is reported in {output}/_reports/ and the others go on. Exit status 1 when more than "
                    "--max-failures videos failed, 2 on an error that stops the whole shard.")
    p.add_argument("--checkpoint", required=True, metavar="URI",
                   help="SAM 2 checkpoint ({'model': state_dict}): a release .pt or one from `savflow train`")
    p.add_argument("--model-config", required=True, metavar="NAME|PATH",
                   help="Hydra config name (configs/sam2.1/sam2.1_hiera_b+.yaml, sam2.1_hiera_tiny128) or a "
                        "YAML file path/URI")
    _roots(p)
    p.add_argument("--output", required=True, metavar="URI", help="prediction root")
    p.add_argument("--shard", type=int, default=0, metavar="K", help="this shard's index, 0-based (default 0)")
    p.add_argument("--num-shards", type=int, default=1, metavar="N",
                   help="number of shards, balanced on frames x objects (default 1)")
    p.add_argument("--benchmark", choices=BENCHMARKS, metavar="NAME",
                   help="the prompting of that benchmark's protocol (one of " + ", ".join(BENCHMARKS) + "): sets "
                        "--use-all-masks and --track-later-objects as the benchmark has them, unless given")
    p.add_argument("--use-all-masks", action="store_true", default=None,
                   help="prompt with the mask of every annotated frame, not only the first")
    p.add_argument("--track-later-objects", action="store_true", default=None,
                   help="prompt each object where its mask first is non-empty and track it from there "
                        "(datasets whose objects do not all appear on the first annotated frame)")
    p.add_argument("--device", choices=DEVICES, default=AUTO, help="default: cuda when available, else cpu")
    p.add_argument("--compile", action="store_true",
                   help="use sam2's torch.compile'd VOS predictor (vos_optimized); the first video is slow")
    p.add_argument("--score-thresh", type=float, metavar="T",
                   help="mask-logit threshold: a pixel is the object where its logit is above T (the official "
                        f"vos_inference.py's --score_thresh; default {SCORE_THRESHOLD})")
    p.add_argument("--apply-postprocessing", action="store_true",
                   help="sam2's demo post-processing (hole filling, multimask fallback); off for SA-V scores")
    p.add_argument("--max-failures", type=int, default=0, metavar="M",
                   help="failed videos tolerated before the exit status is 1 (default 0)")
    p.add_argument("--workers", type=int, default=8, help="parallel transfers per video (default 8)")
    p.add_argument("--overwrite", action="store_true",
                   help="predict again the videos whose predictions in --output were made differently (another "
                        "checkpoint, model config, options or inputs); without it such an output is refused")
    p.set_defaults(func=run_infer)

    q = subparsers.add_parser(
        "plan-shards", help=COMMANDS["plan-shards"],
        description="Count frames and objects per video from the roots' listings and split the videos into N "
                    "shards, longest first (frames x objects), deterministically. Writes JSON with the shards, "
                    "their loads and the balance (largest shard / mean shard).")
    _roots(q)
    q.add_argument("--num-shards", type=int, required=True, metavar="N", help="number of shards (pods)")
    q.add_argument("--output", default="-", metavar="URI", help="where to write the plan JSON (default stdout)")
    q.set_defaults(func=run_plan_shards)


def run_infer(args: argparse.Namespace) -> int:
    from savflow.common import storage
    from savflow.common.command import run_step
    from savflow.common.benchmarks import benchmark
    from savflow.common.videolists import read_video_list
    from savflow.infer.infer import infer

    prompting = benchmark(args.benchmark).inference() if args.benchmark else {}
    for option in ("use_all_masks", "track_later_objects"):
        if getattr(args, option) is None:
            setattr(args, option, prompting.get(option, False))
    return run_step(
        "infer",
        lambda: infer(
            checkpoint=args.checkpoint, model_config=args.model_config, frames=args.frames, masks=args.masks,
            output=args.output, videos=read_video_list(args.video_list), shard=args.shard,
            num_shards=args.num_shards, use_all_masks=args.use_all_masks,
            track_later_objects=args.track_later_objects, device=args.device, compile=args.compile,
            max_failures=args.max_failures, apply_postprocessing=args.apply_postprocessing, workers=args.workers,
            overwrite=args.overwrite,
            **({} if args.score_thresh is None else {"score_thresh": args.score_thresh})),
        (storage.StorageError, ValueError, RuntimeError),
        lambda result: ([f"{f.video}: {f.stage}: {f.reason}" for f in result.report.failures],
                        f"{result.report.summary()}; report: {result.report_uri}", result.exit_code))


def run_plan_shards(args: argparse.Namespace) -> int:
    from savflow.common import storage
    from savflow.common.videolists import read_video_list
    from savflow.infer.shard_plan import plan

    try:
        result = plan(args.frames, args.masks, args.num_shards, read_video_list(args.video_list))
    except (storage.StorageError, ValueError) as exc:
        print(f"savflow plan-shards: error: {exc}", file=sys.stderr)
        return 2
    text = result.to_json()
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        storage.write_text(args.output, text)
        print(f"{len(result.shards)} shards of {len(result.counts)} videos, balance {result.balance:.4f} "
              f"(largest / mean): {args.output}")
    return 0
