"""``savflow stage`` and ``savflow materialize``: the command-line faces of :mod:`savflow.stage`.

Only the standard library at the top: a handler imports the work it runs (PyAV, OpenCV and numpy come with
:mod:`savflow.stage.stage`), so ``savflow --help`` and the other commands never load them.
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "stage": "SA-V videos -> JPEG frames (+ annotations / masks) in object storage, one shard per call",
    "materialize": "copy staged videos (either layout) to local disk for training or inference",
}
EXAMPLES = {
    "stage": ["savflow stage --source gs://my-bucket/sa-v/sav_train/sav_000 --dest gs://my-bucket/sav/staged/train "
              "--sample-rate 4 --workers 8",
              "savflow stage --source gs://my-bucket/sa-v/sav_val --dest gs://my-bucket/sav/staged/val"],
    "materialize": ["savflow materialize --staged gs://my-bucket/sav/staged/train --local /scratch/train"],
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from savflow.common.cpus import available_cpus

    p = subparsers.add_parser(
        "stage",
        help=COMMANDS["stage"],
        description=(
            "Stage a raw SA-V split. A train split ({video}.mp4 + {video}_manual.json) is decoded as a stream "
            "and every S-th frame written as JPEGImages_24fps/{video}/{frame:05d}.jpg (numbered by the frame's "
            "index in the 24 fps video) with the annotation under annotations/ (and, with --masks, the "
            "per-object PNGs of every annotated frame under Annotations_6fps/); a val/test split "
            "(JPEGImages_24fps + Annotations_6fps) is copied byte for byte. Shard K of N takes a balanced, "
            "deterministic share of the videos. Each video is marked complete once all of it is written; a "
            "re-run skips complete videos. Videos that fail are listed in {dest}/_reports/; the exit status is "
            "1 when more than --max-failures failed."),
    )
    p.add_argument("--source", required=True, help="the raw split, e.g. gs://bucket/sav/raw/train")
    p.add_argument("--dest", required=True, help="the staged split, e.g. gs://bucket/sav/staged/train")
    p.add_argument("--video-list", help="URI of a text file of video ids, one per line (default: all)")
    p.add_argument("--shard", type=int, default=0, help="this shard, 0-based (default: %(default)s)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=1,
                   help="keep every S-th frame: 1 = all 24 fps frames, 4 = the annotated 6 fps ones "
                        "(default: %(default)s)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (default: %(default)s)")
    p.add_argument("--workers", type=int, default=available_cpus(),
                   help="JPEG encoding threads (default: %(default)s, the CPUs here)")
    p.add_argument("--layout", choices=("dir", "tar"),
                   help="dir: one object per file; tar: one archive per video, indexed by its marker "
                        "(default: tar for train, dir for val/test)")
    p.add_argument("--max-failures", type=int, default=0,
                   help="failed videos allowed before the exit status is 1 (default: %(default)s)")
    p.add_argument("--masks", action="store_true",
                   help="train split: also write Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png (every object "
                        "on every annotated frame, empty where absent) for evaluation, redoing videos staged "
                        "without them; needs a --sample-rate dividing 4 (val/test: always copied)")
    p.add_argument("--scratch", help="local folder for downloads and archives in progress (default: temp)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_stage)

    m = subparsers.add_parser(
        "materialize",
        help=COMMANDS["materialize"],
        description=(
            "Copy staged videos from --staged onto local disk under --local, in the same layout "
            "(JPEGImages_24fps/, annotations/, Annotations_6fps/) plus file_list.txt, checking every file "
            "against its completion marker. Videos already complete locally are skipped. Exit status 1 when a "
            "requested video is not staged or does not match its marker."),
    )
    m.add_argument("--staged", required=True, help="the staged split, e.g. gs://bucket/sav/staged/train")
    m.add_argument("--local", required=True, help="local folder to fill")
    m.add_argument("--video-list", help="URI of a text file of video ids, one per line (default: all staged)")
    m.add_argument("--workers", type=int, default=8, help="videos copied in parallel (default: %(default)s)")
    m.set_defaults(func=run_materialize)


def run_stage(args: argparse.Namespace) -> int:
    from savflow.common import storage
    from savflow.common.command import run_step
    from savflow.common.videolists import read_video_list
    from savflow.stage.raw_split import SourceError
    from savflow.stage.stage import stage

    return run_step(
        "stage",
        lambda: stage(args.source, args.dest, read_video_list(args.video_list), shard=args.shard,
                      num_shards=args.num_shards, sample_rate=args.sample_rate, jpeg_quality=args.jpeg_quality,
                      workers=args.workers, layout=args.layout, max_failures=args.max_failures,
                      scratch=args.scratch, progress=not args.no_progress, masks=args.masks),
        (ValueError, SourceError, storage.StorageError),
        lambda result: ([f"{f.video}: {f.stage}: {f.reason}" for f in result.failures], result.summary(),
                        result.exit_code))


def run_materialize(args: argparse.Namespace) -> int:
    from savflow.common import storage
    from savflow.common.failures import FailureReport
    from savflow.common.materialize import materialize
    from savflow.common.savformat import SavFormatError
    from savflow.common.videolists import read_video_list

    report = FailureReport("materialize")
    try:
        done = materialize(args.staged, args.local, read_video_list(args.video_list), workers=args.workers,
                           report=report)
    except (SavFormatError, storage.StorageError, ValueError) as exc:
        print(f"savflow materialize: error: {exc}", file=sys.stderr)
        return 2
    for failure in report.failures:
        print(f"failed: {failure.video}: {failure.reason}", file=sys.stderr)
    print(f"materialize: {len(done)} videos complete under {args.local}, {len(report.failures)} failed")
    return report.exit_code(0)
