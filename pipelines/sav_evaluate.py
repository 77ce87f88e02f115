"""``sav-evaluate``: the recurring evaluation of an experiment's newest (or a given) checkpoint on SA-V val/test.

resolve checkpoint -> inference fan-out -> evaluate -> compare with the experiment's previous evaluation and a
baseline; the run fails when J&F fell by more than ``max_drop`` points. The data is already staged (the
``sav-finetune`` pipeline or ``savflow stage`` put it under ``staged_val``). With ``pred_root`` set, the
predictions there are evaluated as they are (no checkpoint, no inference), as the official evaluator does.
"""

from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE, GPU_TOLERATION
from savflow.common.savformat import split_paths
from savflow.evaluate.component import check_regression, resolve_checkpoint
from savflow.pipelines.fanout import evaluate_predictions, infer_and_evaluate
from savflow.preflight.component import preflight
from savflow.pipelines.run_folders import RUN_ID, this_run_folder
from savflow.pipelines.task_settings import TaskSettings


def build(cluster: bool = True):
    """The pipeline, with Kubernetes task settings (``cluster``) or without them (for ``kfp.local``)."""
    ts = TaskSettings(cluster)

    @dsl.pipeline(name="sav-evaluate",
                  description="Evaluate a SAM 2 checkpoint on SA-V (J&F) and guard against regressions.")
    def sav_evaluate(
        staged_val: str,
        experiment_dir: str,
        checkpoint: str = "",
        val_video_list: str = "",
        image: str = DEFAULT_IMAGE,
        model_config: str = "configs/sam2.1/sam2.1_hiera_b+.yaml",
        infer_shards: int = 4,
        use_all_masks: bool = False,
        track_later_objects: bool = True,
        infer_device: str = "auto",
        score_thresh: float = 0.0,
        do_not_skip_first_last: bool = False,
        pred_root: str = "",
        node_selector: dict = {},
        tolerations: list = [dict(GPU_TOLERATION)],
        max_drop: float = 1.0,
        baseline: float = -1.0,
    ) -> str:
        check = preflight(namespace="", backend="none", nodes=1, gpus_per_node=1, node_selector=node_selector,
                          queue_name="", staged_val=staged_val, experiment_dir=experiment_dir, cluster=cluster)
        ts.name(check, "preflight")
        ts.uncached(ts.image(check, image))
        eval_dir = this_run_folder(ts, image, experiment_dir, "eval").output
        val = split_paths(staged_val)
        with dsl.If(pred_root == "", "predict with the checkpoint"):
            resolved = resolve_checkpoint(checkpoint=checkpoint, experiment_dir=experiment_dir)
            resolved.after(check)
            ts.uncached(ts.image(resolved, image))
            scores = infer_and_evaluate(
                ts, image=image, checkpoint=resolved.output, model_config=model_config,
                frames=val.frames, masks=val.masks,
                annotations_root=val.annotations, pred_root=f"{eval_dir}/pred", eval_root=eval_dir,
                video_list=val_video_list, num_shards=infer_shards, use_all_masks=use_all_masks,
                track_later_objects=track_later_objects, device=infer_device, score_thresh=score_thresh,
                do_not_skip_first_last=do_not_skip_first_last, node_selector=node_selector,
                tolerations=tolerations, title="evaluation")
            inferred = _record(ts, image, scores, experiment_dir=experiment_dir, checkpoint=resolved.output,
                               eval_dir=eval_dir, max_drop=max_drop, baseline=baseline)
        with dsl.Else():
            given = evaluate_predictions(ts, image=image, frames=val.frames, masks=val.masks,
                                         annotations_root=val.annotations, pred_root=pred_root, eval_root=eval_dir,
                                         video_list=val_video_list, do_not_skip_first_last=do_not_skip_first_last,
                                         title="evaluation")
            given.after(check)
            evaluated = _record(ts, image, given, experiment_dir=experiment_dir, checkpoint=pred_root,
                                eval_dir=eval_dir, max_drop=max_drop, baseline=baseline)
        # Only the run's return value (kfp.local reads it). Backend 2.16 never marks the If branch COMPLETE (its
        # ParallelFor sub-DAG's state isn't propagated; 2.17 does), so a task consuming this OneOf would fail
        # there: tests/integration/test_backend_compat.py.
        return dsl.OneOf(inferred.output, evaluated.output)

    return sav_evaluate


def _record(ts: TaskSettings, image, scores: dsl.PipelineTask, *, experiment_dir, checkpoint, eval_dir, max_drop,
            baseline) -> dsl.PipelineTask:
    """The regression check after ``scores``: compare with the history, then record this evaluation in it."""
    verdict = check_regression(experiment_dir=experiment_dir, run_id=RUN_ID, checkpoint=checkpoint,
                               eval_output=eval_dir, max_drop=max_drop, baseline=baseline)
    verdict.after(scores)
    ts.uncached(ts.image(verdict, image))
    return verdict


sav_evaluate = build()
