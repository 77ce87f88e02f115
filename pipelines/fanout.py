"""The inference fan-out and evaluation that both pipelines run: plan shards -> ParallelFor infer -> evaluate.

Called inside a ``@dsl.pipeline`` function; it adds its tasks to that pipeline. The number of shards is a
pipeline parameter (each shard is one pod, all of them run at once unless the cluster queues them); a cap on
concurrent shards is ParallelFor's ``parallelism``, which KFP 2.17 takes only at compile time
(:data:`MAX_PARALLEL_SHARDS`, 0 = no cap).
"""

from __future__ import annotations

from kfp import dsl

from savflow.evaluate.component import evaluate
from savflow.infer.component import infer_shard, plan_inference_shards
from savflow.pipelines.task_settings import EVALUATE, INFER, TaskSettings

MAX_PARALLEL_SHARDS = 0


def infer_and_evaluate(ts: TaskSettings, *, image, checkpoint, model_config, frames, masks, annotations_root,
                       pred_root, eval_root, video_list, num_shards, use_all_masks, track_later_objects, device,
                       score_thresh, do_not_skip_first_last, node_selector, tolerations, title: str,
                       after=()) -> dsl.PipelineTask:
    """Add the fan-out over ``num_shards`` shards and the evaluation; returns the evaluate task."""
    plan = plan_inference_shards(frames=frames, masks=masks, num_shards=num_shards, checkpoint=checkpoint,
                                 video_list=video_list)
    ts.uncached(ts.image(plan, image))
    ts.name(plan, f"plan shards ({title})")
    for task in after:
        plan.after(task)
    with dsl.ParallelFor(plan.output, parallelism=MAX_PARALLEL_SHARDS) as shard:
        infer = infer_shard(shard=shard, model_config=model_config, frames=frames, masks=masks, output=pred_root,
                            use_all_masks=use_all_masks, track_later_objects=track_later_objects, device=device,
                            score_thresh=score_thresh)
        ts.name(infer, f"infer ({title})")
        ts.image(infer, image, INFER)
        ts.retries(infer)
        ts.scratch(infer)
        ts.gpu(infer, node_selector, tolerations)
    scores = evaluate_predictions(ts, image=image, frames=frames, masks=masks, annotations_root=annotations_root,
                                  pred_root=pred_root, eval_root=eval_root, video_list=video_list,
                                  do_not_skip_first_last=do_not_skip_first_last, title=title)
    scores.after(infer)
    return scores


def evaluate_predictions(ts: TaskSettings, *, image, frames, masks, annotations_root, pred_root, eval_root,
                         video_list, do_not_skip_first_last, title: str) -> dsl.PipelineTask:
    """Add the evaluation of the predictions under ``pred_root``; returns its task."""
    scores = evaluate(gt_root=masks, pred_root=pred_root, frames_root=frames, output=eval_root,
                      video_list=video_list, annotations_root=annotations_root, title=title,
                      num_workers=int(EVALUATE[0]), do_not_skip_first_last=do_not_skip_first_last)
    ts.name(scores, f"evaluate ({title})")
    ts.uncached(ts.image(scores, image, EVALUATE))
    return scores
