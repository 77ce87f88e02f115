"""KFP components of the inference step: plan balanced shards, then segment one shard per task."""

from typing import List

from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_inference_shards(frames: str, masks: str, num_shards: int, checkpoint: str,
                          video_list: str = "") -> List[str]:
    """Balanced shards (frames x objects, longest first), one ParallelFor item each: a JSON object with the
    shard's ``videos`` and the ``checkpoint`` to run.

    The checkpoint travels inside the item because kfp.local 2.17 hands a task inside a ParallelFor the loop
    item in place of any other upstream task's output (a checkpoint from the train step, say).
    """
    import json

    from savflow.common.videolists import read_video_list
    from savflow.infer.shard_plan import plan

    result = plan(frames, masks, num_shards, read_video_list(video_list))
    print(f"{len(result.shards)} shards, largest / mean load = {result.balance:.3f}")
    return [json.dumps({"videos": shard, "checkpoint": checkpoint}) for shard in result.shards if shard]


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def infer_shard(shard: str, model_config: str, frames: str, masks: str, output: str, use_all_masks: bool = False,
                track_later_objects: bool = False, device: str = "auto", compile_model: bool = False,
                max_failures: int = 0, score_thresh: float = 0.0) -> str:
    """Segment the videos of one shard (an item of plan_inference_shards) into ``output``, masks where the
    logits exceed ``score_thresh``; returns the failure report's URI."""
    import json
    import logging

    from savflow.infer.infer import infer

    logging.basicConfig(level=logging.INFO)
    item = json.loads(shard)
    result = infer(item["checkpoint"], model_config, frames, masks, output, videos=item["videos"],
                   use_all_masks=use_all_masks, track_later_objects=track_later_objects, device=device,
                   compile=compile_model, max_failures=max_failures, score_thresh=score_thresh)
    print(result.report.summary())
    if result.exit_code != 0:
        raise RuntimeError(f"{len(result.report.failures)} videos failed (more than max_failures={max_failures}); "
                           f"see {result.report_uri}")
    return result.report_uri
