"""KFP components of the inference step: plan balanced shards, then segment one shard per task."""

from typing import List

from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_inference_shards(frames: str, masks: str, num_shards: int, checkpoint: str,
                          video_list: str = "", output: str = "", benchmark: str = "") -> List[str]:
    """Balanced shards (frames x objects, longest first), one ParallelFor item each: a JSON object with the
    shard's ``videos``, the ``checkpoint`` to run, the ``frames`` and ``masks`` read, and (when given) the
    ``output`` folder and the ``benchmark`` whose prompting to use.

    All of it travels inside the item because kfp.local 2.17 hands a task inside a ParallelFor the loop item in
    place of any other upstream task's output (a checkpoint from the train step, say), and in place of an
    enclosing loop's item (sav-evaluate's benchmarks, whose folders these are).
    """
    import json

    from savflow.common.benchmarks import benchmark as preset
    from savflow.common.videolists import read_video_list
    from savflow.infer.shard_plan import plan

    if benchmark:
        preset(benchmark)  # an unknown name fails here, before any GPU
    result = plan(frames, masks, num_shards, read_video_list(video_list))
    print(f"{len(result.shards)} shards, largest / mean load = {result.balance:.3f}")
    extra = {k: v for k, v in (("output", output), ("benchmark", benchmark)) if v}
    return [json.dumps({"videos": shard, "checkpoint": checkpoint, "frames": frames, "masks": masks, **extra})
            for shard in result.shards if shard]


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def infer_shard(shard: str, model_config: str, frames: str = "", masks: str = "", output: str = "",
                use_all_masks: bool = False, track_later_objects: bool = False, device: str = "auto",
                compile_model: bool = False, max_failures: int = 0, score_thresh: float = 0.0) -> str:
    """Segment the videos of one shard (an item of plan_inference_shards) into ``output``, masks where the
    logits exceed ``score_thresh``; returns the failure report's URI. The item's ``frames``, ``masks`` and
    ``output`` win over the inputs of those names; an item with a ``benchmark`` is prompted as that benchmark's
    protocol says (:meth:`savflow.common.benchmarks.Benchmark.inference`), whatever ``use_all_masks`` and
    ``track_later_objects`` say."""
    import json
    import logging

    from savflow.common.benchmarks import benchmark
    from savflow.infer.infer import infer

    logging.basicConfig(level=logging.INFO)
    item = json.loads(shard)
    frames, masks, output = (item.get(k) or v for k, v in (("frames", frames), ("masks", masks), ("output", output)))
    missing = [k for k, v in (("frames", frames), ("masks", masks), ("output", output)) if not v]
    if missing:
        raise ValueError(f"infer_shard: no {', '.join(missing)} in the inputs or the shard item")
    if item.get("benchmark"):
        prompting = benchmark(item["benchmark"]).inference()
        use_all_masks, track_later_objects = prompting["use_all_masks"], prompting["track_later_objects"]
    result = infer(item["checkpoint"], model_config, frames, masks, output, videos=item["videos"],
                   use_all_masks=use_all_masks, track_later_objects=track_later_objects, device=device,
                   compile=compile_model, max_failures=max_failures, score_thresh=score_thresh)
    print(result.report.summary())
    if result.exit_code != 0:
        raise RuntimeError(f"{len(result.report.failures)} videos failed (more than max_failures={max_failures}); "
                           f"see {result.report_uri}")
    return result.report_uri
