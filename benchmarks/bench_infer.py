"""Inference throughput and shard balance.

1. Shard planning on a realistic, seeded list (a few hundred videos of 10-60 s at 24 fps, 1-10 objects each):
   largest shard / (total / N) for LPT against round-robin over the sorted names (the baseline).
2. CPU, tiny config (``sam2.1_hiera_tiny128``, random weights): frames/s of our loop (all objects of a video in one
   inference state, end to end: frame loading, prompts, propagation, thresholding) against one state per
   object (what sam2's ``tools/vos_inference.py`` does with ``--track_object_appearing_later_in_video``),
   measured in the same run.
3. CUDA only: SAM 2.1 b+ (``configs/sam2.1/sam2.1_hiera_b+.yaml``) at 1024 px with random weights, bf16 autocast,
   without and with ``--compile`` (``vos_optimized``): propagation frames/s with one object after warm-up, the
   way sam2's own ``sam2/benchmark.py`` measures it (the SAM 2 README reports 64.1 frames/s for SAM 2.1 b+ on an
   A100), then with three objects, and peak GPU memory.

Run: ``.venv/bin/python benchmarks/bench_infer.py [--videos 3 --frames 48 --objects 3 --threads 1 --skip-gpu]``.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # sam2's per-video progress bars would drown the figures

import numpy as np  # noqa: E402
import torch  # noqa: E402

from savflow.common.lpt_shards import plan_shards  # noqa: E402
from savflow.common.demo_data import SyntheticSpec, write_val_split  # noqa: E402
from savflow.infer.predictor import LoadedPredictor, build_predictor  # noqa: E402
from savflow.infer.shard_plan import balance_ratio  # noqa: E402
from savflow.infer.vos import MaskIndex, inference_context, segment_video  # noqa: E402

TINY = "sam2.1_hiera_tiny128"
B_PLUS = "configs/sam2.1/sam2.1_hiera_b+.yaml"
README_B_PLUS_A100_FPS = 64.1


def realistic_weights(num_videos: int, seed: int) -> dict[str, float]:
    """Videos of 10-60 s at 24 fps with 1-10 objects: weight = frames x objects."""
    rng = random.Random(seed)
    return {f"sav_{i:06d}": float(round(rng.uniform(10, 60) * 24) * rng.randint(1, 10))
            for i in range(num_videos)}


def bench_sharding(num_videos: int, seed: int) -> None:
    weights = realistic_weights(num_videos, seed)
    names = sorted(weights)
    total, biggest = sum(weights.values()), max(weights.values())
    print(f"shard balance, {num_videos} videos (seed {seed}), largest shard / (total / N):")
    print(f"{'N':>4} {'LPT':>8} {'round-robin':>12} {'LPT bound (1 + max / mean)':>28}")
    for n in (2, 4, 8, 16, 32, 64):
        lpt = plan_shards(weights, n)
        rr = [names[k::n] for k in range(n)]
        bound = 1 + biggest / (total / n)
        print(f"{n:>4} {balance_ratio(lpt, weights):>8.4f} {balance_ratio(rr, weights):>12.4f} {bound:>28.4f}")


def _masks_of(split: Path, video: str) -> MaskIndex:
    return MaskIndex.scan(video, split / "Annotations_6fps" / video)


def _segment_all(loaded: LoadedPredictor, split: Path, videos: list[str]) -> tuple[int, float]:
    frames = 0
    start = time.perf_counter()
    for video in videos:
        stats = segment_video(loaded.model, loaded.device, split / "JPEGImages_24fps" / video,
                              _masks_of(split, video), lambda o, f, m: None)
        frames += stats.frames
    return frames, time.perf_counter() - start


def _segment_per_object(loaded: LoadedPredictor, split: Path, videos: list[str]) -> tuple[int, float]:
    """Baseline: one inference state per object, each from its own frame loading and propagation."""
    model, frames = loaded.model, 0
    start = time.perf_counter()
    for video in videos:
        masks = _masks_of(split, video)
        first = masks.annotated_frames[0]
        with inference_context(loaded.device):
            for obj in masks.objects:
                state = model.init_state(video_path=str(split / "JPEGImages_24fps" / video))
                model.add_new_mask(state, first, obj, masks.load(obj, first))
                for _, _, logits in model.propagate_in_video(state):
                    (logits > 0).cpu().numpy()
            frames += state["num_frames"]
    return frames, time.perf_counter() - start


def bench_cpu(videos: int, frames: int, objects: int) -> None:
    torch.manual_seed(0)
    loaded = build_predictor(None, TINY, device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        split = Path(tmp)
        names = write_val_split(tmp, SyntheticSpec(num_videos=videos, num_frames=frames, num_objects=objects,
                                                   height=128, width=128, seed=1))
        _segment_all(loaded, split, names[:1])  # warm-up
        n, batched = _segment_all(loaded, split, names)
        _, separate = _segment_per_object(loaded, split, names)
    print(f"CPU ({torch.get_num_threads()} threads), {TINY}, {videos} videos x {frames} frames x {objects} objects "
          f"at 128 px, float32, end to end:")
    print(f"  one state per video (ours):   {n / batched:8.1f} frames/s")
    print(f"  one state per object (base):  {n / separate:8.1f} frames/s")
    print(f"  ratio ours / baseline:        {separate / batched:8.2f}x")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _propagation_fps(loaded: LoadedPredictor, split: Path, video: str, num_objects: int, warm_up: int,
                     runs: int) -> float:
    model = loaded.model
    masks = _masks_of(split, video)
    first = masks.annotated_frames[0]
    with inference_context(loaded.device):
        state = model.init_state(video_path=str(split / "JPEGImages_24fps" / video))
        for obj in masks.objects[:num_objects]:
            model.add_new_mask(state, first, obj, masks.load(obj, first))
        fps = []
        for i in range(warm_up + runs):
            _synchronize(loaded.device)
            start = time.perf_counter()
            for _ in model.propagate_in_video(state):
                pass
            _synchronize(loaded.device)
            if i >= warm_up:
                fps.append(state["num_frames"] / (time.perf_counter() - start))
    return float(np.mean(fps))


def bench_gpu(frames: int, warm_up: int, runs: int, compile_modes: tuple[bool, ...] = (False, True)) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-infer-gpu-") as tmp:
        split = Path(tmp)
        [video] = write_val_split(tmp, SyntheticSpec(num_videos=1, num_frames=frames, num_objects=3,
                                                     height=720, width=1280, seed=2))
        print(f"CUDA ({torch.cuda.get_device_name()}), SAM 2.1 b+ at 1024 px, random weights, bf16, "
              f"{frames} frames at 1280x720, mean of {runs} runs after {warm_up} warm-up:")
        for compiled in compile_modes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            loaded = build_predictor(None, B_PLUS, device="cuda", compile=compiled)
            one = _propagation_fps(loaded, split, video, 1, warm_up, runs)
            three = _propagation_fps(loaded, split, video, 3, warm_up, runs)
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"  compile={compiled!s:5}  1 object {one:7.1f} frames/s ({one / README_B_PLUS_A100_FPS:.2f}x "
                  f"the README's A100 {README_B_PLUS_A100_FPS})  3 objects {three:7.1f} frames/s  "
                  f"peak {peak:.2f} GiB")
            del loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--plan-videos", type=int, default=300)
    parser.add_argument("--gpu-frames", type=int, default=200)
    parser.add_argument("--gpu-warm-up", type=int, default=3)
    parser.add_argument("--gpu-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads on CPU (default: torch's choice); 1 is steadier on a busy machine")
    parser.add_argument("--skip-gpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_sharding(args.plan_videos, seed=0)
    bench_cpu(args.videos, args.frames, args.objects)
    if args.skip_gpu or not torch.cuda.is_available():
        print("CUDA: not available on this machine; the b+ figures need a GPU")
        return
    bench_gpu(args.gpu_frames, args.gpu_warm_up, args.gpu_runs)


if __name__ == "__main__":
    main()
