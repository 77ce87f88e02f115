"""``savflow import`` and ``savflow validate``: your own videos into savflow's layouts, and a check of training
data against a training config before any GPU is spent.

Only the standard library at the top (see :mod:`savflow.pipelines.cli`): the handlers import the work (PIL,
numpy, pycocotools; PyAV for mp4s; Hydra and sam2 to compose the config that ``validate`` checks against).
Exit status: 0 done, 1 done with videos that failed or are invalid (each reported by file, video and field),
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "import": "DAVIS / MOSE / LVOS / YouTube-VOS / SA-V val / frames + masks -> SA-V train format + val layout",
    "validate": "check training data against a training config (frames, masks, annotated frames) before training",
}
EXAMPLES = {
    "import": ["savflow import --format davis --source /data/DAVIS --dest gs://my-bucket/davis/raw"],
    "validate": ["savflow validate --train gs://my-bucket/sav/staged/train --config sam2.1_hiera_b+_sav_finetune",
                 "savflow validate --train /data/mine/staged --drop-invalid --valid-list /data/mine/valid.txt"],
}
FORMATS = ("davis", "ytvos", "sav-val", "frames+masks")
DEFAULT_CONFIG = "sam2.1_hiera_b+_sav_finetune"


def register(subparsers: argparse._SubParsersAction) -> None:
    from savflow.common.cpus import available_cpus

    p = subparsers.add_parser(
        "import", help=COMMANDS["import"],
        description=(
            "Convert a dataset into savflow's raw layouts under --dest: JPEGImages_24fps/{video}/{frame:05d}.jpg "
            "(JPEG frames copied byte for byte, renumbered 0..N-1), annotations/{video}_manual.json (SA-V train "
            "format: COCO RLE masklets on every ann_every-th frame, empty where an object is absent), "
            "Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png (the val layout), file_list.txt and "
            "savflow_import.json (frame rate, annotation stride and the --override values that tell a training "
            "config about them). savflow train reads --dest directly; stage, infer and evaluate read its val "
            "layout. Formats: davis (also MOSE, LVOS: JPEGImages/[480p/]{video}/*.jpg + "
            "Annotations/[480p/]{video}/*.png, palette value v = object v - 1), ytvos (meta.json + JPEGImages/ + "
            "Annotations/), sav-val (JPEGImages_24fps/ + Annotations_6fps/), frames+masks ({video}/frames/*.jpg|png "
            "+ {video}/masks/{object}/*.png or {video}/masks/*.png)."))
    p.add_argument("--format", required=True, choices=FORMATS, help="the source's layout")
    p.add_argument("--source", required=True, help="the dataset (split) root, a local path or gs://")
    p.add_argument("--dest", required=True, help="where the imported dataset goes")
    p.add_argument("--video-list", help="URI of a list of video ids to import (default: all)")
    p.add_argument("--fps", type=float,
                   help="frame rate of the source frames as named (default: davis 24, ytvos 30 (its video; the "
                        "frames kept every 5th give 6), sav-val 24, frames+masks 24); recorded, never resampled")
    p.add_argument("--ann-every", type=int,
                   help="annotation stride to write (default: the largest that every annotated frame sits on)")
    p.add_argument("--resolution", help="davis: the JPEGImages/ level to read (default 480p where there is one)")
    p.add_argument("--no-val", action="store_true", help="do not write the val layout (Annotations_6fps)")
    p.add_argument("--mp4", action="store_true",
                   help="also write mp4/{video}.mp4 (lossless H.264) + mp4/{video}_manual.json, the raw SA-V train "
                        "split savflow stage (and the sav-finetune pipeline's raw_train) reads; needs an "
                        "annotation stride of 4 or more")
    p.add_argument("--jpeg-quality", type=int, default=95,
                   help="JPEG quality for frames that are not JPEG already (default: %(default)s)")
    p.add_argument("--workers", type=int, default=available_cpus(),
                   help="videos converted in parallel (default: %(default)s, the CPUs here)")
    p.add_argument("--scratch", help="local folder for mp4s being encoded (default: temp)")
    p.set_defaults(func=run_import)

    v = subparsers.add_parser(
        "validate", help=COMMANDS["validate"],
        description=(
            "Check every video under --train (JPEGImages_24fps/ + annotations/, or *.mp4 + *_manual.json) against "
            "what the training config needs: frames are JPEG files named {frame:05d}.jpg, masks have the frames' "
            "size, at least num_frames annotated frames sam2 can sample, objects present in the first annotated "
            "frame, no empty masklets, the stride the data was written with, and num_frames >= 3. Every problem "
            "is reported by video and field in one pass. Exit status 1 when some video is invalid (with "
            "--drop-invalid: a list of the valid videos is written instead), 2 on bad usage."))
    v.add_argument("--train", required=True, help="the training split root")
    v.add_argument("--config", default=DEFAULT_CONFIG, help="Hydra training config by name (default: %(default)s)")
    v.add_argument("--override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="Hydra overrides, as given to savflow train")
    v.add_argument("--file-list", "--video-list", dest="file_list",
                   help="URI of the training video list (default: every *_manual.json; --video-list as on every "
                        "command, --file-list as sam2 calls it)")
    v.add_argument("--sample-rate", type=int, default=1,
                   help="mp4 splits: the savflow stage --sample-rate they will be staged with (default: %(default)s)")
    v.add_argument("--all-frames", action="store_true", help="read every frame's header, not just the first")
    v.add_argument("--no-video-probe", action="store_true",
                   help="mp4 splits: do not open the mp4s (a bucket's are downloaded for it)")
    v.add_argument("--strict", action="store_true", help="warnings make a video invalid too")
    v.add_argument("--drop-invalid", action="store_true",
                   help="write the valid videos to --valid-list and exit 0 (if any is valid) instead of 1")
    v.add_argument("--valid-list", help="URI for --drop-invalid's list (default: {train}/file_list.valid.txt)")
    v.add_argument("--report", help="URI to write the findings to as JSON")
    v.add_argument("--workers", type=int, default=16, help="videos read in parallel (default: %(default)s)")
    v.set_defaults(func=run_validate)


def run_import(args: argparse.Namespace) -> int:
    from savflow.common import storage
    from savflow.common.command import run_step
    from savflow.common.savformat import SavFormatError
    from savflow.common.videolists import read_video_list
    from savflow.importers.run import import_dataset
    from savflow.importers.source import SourceError

    return run_step(
        "import",
        lambda: import_dataset(args.format, args.source, args.dest, videos=read_video_list(args.video_list),
                               fps=args.fps, ann_every=args.ann_every, val=not args.no_val, mp4=args.mp4,
                               jpeg_quality=args.jpeg_quality, workers=args.workers, resolution=args.resolution,
                               scratch=args.scratch),
        (SourceError, SavFormatError, ValueError, storage.StorageError),
        lambda result: (result.problems, result.summary(), result.exit_code))


def run_validate(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from savflow.common import storage
    from savflow.common.savformat import SavFormatError
    from savflow.common.videolists import read_video_list
    from savflow.validate.needs import read_needs
    from savflow.validate.run import validate_split, write_valid_list
    from savflow.validate.scan import SplitError

    if args.sample_rate < 1:
        print("savflow validate: error: --sample-rate must be >= 1", file=sys.stderr)
        return 2
    try:
        needs = read_needs(args.config, args.override)
        report = validate_split(args.train, needs, videos=read_video_list(args.file_list),
                                all_frames=args.all_frames, probe_videos=not args.no_video_probe,
                                stage_sample_rate=args.sample_rate, strict=args.strict, workers=args.workers)
    except (HydraException, OmegaConfBaseException, ValueError, SplitError, SavFormatError,
            storage.StorageError) as exc:
        print(f"savflow validate: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    if args.report:
        storage.write_text(args.report, report.to_json())
    if args.drop_invalid:
        print(f"valid videos: {write_valid_list(report, args.valid_list)} ({len(report.valid)} of "
              f"{len(report.videos)})")
    return report.exit_code(args.drop_invalid)
