"""The inference fan-out and evaluation that both pipelines run: plan shards -> ParallelFor infer -> evaluate.

Called inside a ``@dsl.pipeline`` function; it adds its tasks to that pipeline. The number of shards is a
pipeline parameter (each shard is one pod, all of them run at once unless the cluster queues them); a cap on
concurrent shards is ParallelFor's ``parallelism``, which KFP 2.17 takes only at compile time
(:data:`MAX_PARALLEL_SHARDS`, 0 = no cap).

``sav-evaluate`` runs the same per evaluation planned by ``plan_evaluations`` (:func:`evaluate_each`: the single
one of ``staged_val``, or one per benchmark), inside a ParallelFor over them. Every folder of an evaluation comes
in its loop item (made in Python by :mod:`savflow.evaluate.suite`, no f-strings on runtime values), and the
inference shards inside take them from their own items (plan_inference_shards says why).
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
                       benchmark="", after=()) -> dsl.PipelineTask:
    """Add the fan-out over ``num_shards`` shards and the evaluation; returns the evaluate task. ``benchmark``:
    the preset whose prompting and scoring rule win over the options ("" = the options)."""
    # pred_root in the items: it is built from a run_folder task's output, which kfp.local would replace by
    # the loop item inside the ParallelFor (plan_inference_shards says why)
    plan = plan_inference_shards(frames=frames, masks=masks, num_shards=num_shards, checkpoint=checkpoint,
                                 video_list=video_list, output=pred_root, benchmark=benchmark)
    ts.uncached(ts.image(plan, image))
    ts.name(plan, f"plan shards ({title})")
    for task in after:
        plan.after(task)
    infer = _infer_shards(ts, plan, image=image, model_config=model_config, use_all_masks=use_all_masks,
                          track_later_objects=track_later_objects, device=device, score_thresh=score_thresh,
                          node_selector=node_selector, tolerations=tolerations, title=title)
    scores = evaluate_predictions(ts, image=image, frames=frames, masks=masks, annotations_root=annotations_root,
                                  pred_root=pred_root, eval_root=eval_root, video_list=video_list,
                                  do_not_skip_first_last=do_not_skip_first_last, title=title, benchmark=benchmark)
    scores.after(infer)
    return scores


def _infer_shards(ts: TaskSettings, plan: dsl.PipelineTask, *, image, model_config, use_all_masks,
                  track_later_objects, device, score_thresh, node_selector, tolerations, title: str
                  ) -> dsl.PipelineTask:
    """The ParallelFor over ``plan``'s shards (whose items carry the frames, masks and output folders); returns
    the infer task (``.after`` it waits for every shard)."""
    with dsl.ParallelFor(plan.output, parallelism=MAX_PARALLEL_SHARDS) as shard:
        infer = infer_shard(shard=shard, model_config=model_config, use_all_masks=use_all_masks,
                            track_later_objects=track_later_objects, device=device, score_thresh=score_thresh)
        ts.name(infer, f"infer ({title})")
        ts.image(infer, image, INFER)
        ts.retries(infer)
        ts.scratch(infer)
        ts.gpu(infer, node_selector, tolerations)
    return infer


def evaluate_predictions(ts: TaskSettings, *, image, frames, masks, annotations_root, pred_root, eval_root,
                         video_list, do_not_skip_first_last, title, benchmark="", name="",
                         display: str | None = None) -> dsl.PipelineTask:
    """Add the evaluation of the predictions under ``pred_root``; returns its task."""
    scores = evaluate(gt_root=masks, pred_root=pred_root, frames_root=frames, output=eval_root,
                      video_list=video_list, annotations_root=annotations_root, title=title,
                      num_workers=int(EVALUATE[0]), do_not_skip_first_last=do_not_skip_first_last,
                      benchmark=benchmark, name=name)
    ts.name(scores, f"evaluate ({display or title})")
    ts.uncached(ts.image(scores, image, EVALUATE))
    return scores


def evaluate_each(ts: TaskSettings, evaluations: dsl.PipelineTask, *, image, do_not_skip_first_last,
                  infer: dict | None, title: str) -> dsl.PipelineTask:
    """A ParallelFor over ``evaluations`` (plan_evaluations items): with ``infer`` (model_config, num_shards,
    use_all_masks, track_later_objects, device, score_thresh, node_selector, tolerations) plan shards ->
    ParallelFor infer -> evaluate, else evaluate the given predictions. Returns the evaluate task (``.after``
    it waits for every evaluation)."""
    with dsl.ParallelFor(evaluations.output) as item:
        if infer is not None:
            settings = dict(infer)
            plan = plan_inference_shards(frames=item.frames, masks=item.masks, num_shards=settings.pop("num_shards"),
                                         checkpoint=item.checkpoint, video_list=item.video_list,
                                         output=item.pred_root, benchmark=item.benchmark)
            ts.uncached(ts.image(plan, image))
            ts.name(plan, f"plan shards ({title})")
            shards = _infer_shards(ts, plan, image=image, title=title, **settings)
        scores = evaluate_predictions(ts, image=image, frames=item.frames, masks=item.masks,
                                      annotations_root=item.annotations, pred_root=item.pred_root,
                                      eval_root=item.eval_root, video_list=item.video_list,
                                      do_not_skip_first_last=do_not_skip_first_last, title=item.title,
                                      benchmark=item.benchmark, name=item.label, display=title)
        if infer is not None:
            scores.after(shards)
    return scores
