"""``sav-evaluate``: the recurring evaluation of an experiment's newest (or a given) checkpoint on SA-V val/test,
or on several benchmarks at once.

resolve checkpoint -> plan the evaluations -> for each: inference fan-out -> evaluate -> compare each with the
experiment's previous evaluation of the same benchmark and a baseline; the run fails when J&F fell by more than
``max_drop`` points. The data is already staged (the ``sav-finetune`` pipeline or ``savflow stage`` put it under
``staged_val``). With ``benchmarks`` (a list of ``{name, staged_val, benchmark}``) there is one evaluation per
item instead, each predicted and scored under its benchmark's protocol (:mod:`savflow.common.benchmarks`),
with its own Metrics (``J&F davis``), folder (``{eval}/{name}``) and history
(:mod:`savflow.evaluate.suite`). With ``pred_root`` set, the predictions there (``{pred_root}/{name}`` per
benchmark) are evaluated as they are (no checkpoint, no inference), as the official evaluator does.
"""

from kfp import dsl

from savflow.common.devices import AUTO
from savflow.common.deployment import DEFAULT_IMAGE, GPU_TOLERATION
from savflow.evaluate.component import check_regression, plan_evaluations, resolve_checkpoint
from savflow.infer.defaults import MODEL_CONFIG, SCORE_THRESHOLD, SHARDS
from savflow.pipelines.fanout import evaluate_each
from savflow.preflight.component import preflight
from savflow.pipelines.run_folders import RUN_ID, this_run_folder
from savflow.pipelines.task_settings import TaskSettings


def build(cluster: bool = True):
    """The pipeline, with Kubernetes task settings (``cluster``) or without them (for ``kfp.local``)."""
    ts = TaskSettings(cluster)

    @dsl.pipeline(name="sav-evaluate",
                  description="Evaluate a SAM 2 checkpoint on SA-V or other benchmarks (J&F) and guard against "
                              "regressions.")
    def sav_evaluate(
        experiment_dir: str,
        staged_val: str = "",
        benchmarks: list = [],
        checkpoint: str = "",
        val_video_list: str = "",
        image: str = DEFAULT_IMAGE,
        model_config: str = MODEL_CONFIG,
        infer_shards: int = SHARDS,
        use_all_masks: bool = False,
        track_later_objects: bool = True,
        infer_device: str = AUTO,
        score_thresh: float = SCORE_THRESHOLD,
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
        with dsl.If(pred_root == "", "predict with the checkpoint"):
            resolved = resolve_checkpoint(checkpoint=checkpoint, experiment_dir=experiment_dir)
            resolved.after(check)
            ts.uncached(ts.image(resolved, image))
            planned = _plan(ts, image, benchmarks=benchmarks, staged_val=staged_val,
                            val_video_list=val_video_list, eval_dir=eval_dir, checkpoint=resolved.output,
                            pred_root="", baseline=baseline)
            scores = evaluate_each(ts, planned, image=image, do_not_skip_first_last=do_not_skip_first_last,
                                   title="evaluation", infer=dict(
                                       model_config=model_config, num_shards=infer_shards,
                                       use_all_masks=use_all_masks, track_later_objects=track_later_objects,
                                       device=infer_device, score_thresh=score_thresh,
                                       node_selector=node_selector, tolerations=tolerations))
            inferred = _record(ts, image, planned, scores, experiment_dir=experiment_dir, max_drop=max_drop)
        with dsl.Else():
            given = _plan(ts, image, benchmarks=benchmarks, staged_val=staged_val, val_video_list=val_video_list,
                          eval_dir=eval_dir, checkpoint="", pred_root=pred_root, baseline=baseline)
            given.after(check)
            scores = evaluate_each(ts, given, image=image, do_not_skip_first_last=do_not_skip_first_last,
                                   title="evaluation", infer=None)
            evaluated = _record(ts, image, given, scores, experiment_dir=experiment_dir, max_drop=max_drop)
        # Only the run's return value (kfp.local reads it). Backend 2.16 never marks the branches COMPLETE (their
        # ParallelFor sub-DAGs' state isn't propagated; 2.17 does), so a task consuming this OneOf would fail
        # there: tests/integration/test_backend_compat.py.
        return dsl.OneOf(inferred.outputs["Output"], evaluated.outputs["Output"])

    return sav_evaluate


def _plan(ts: TaskSettings, image, **inputs) -> dsl.PipelineTask:
    """The run's evaluations (the benchmarks list checked), one ParallelFor item each."""
    task = plan_evaluations(**inputs)
    ts.name(task, "plan evaluations")
    return ts.uncached(ts.image(task, image))


def _record(ts: TaskSettings, image, planned: dsl.PipelineTask, scores: dsl.PipelineTask, *, experiment_dir,
            max_drop) -> dsl.PipelineTask:
    """The regression check after every evaluation (``scores``, in its ParallelFor): compare each with the
    history of its benchmark, then record it there."""
    verdict = check_regression(experiment_dir=experiment_dir, run_id=RUN_ID, evaluations=planned.output,
                               max_drop=max_drop)
    verdict.after(scores)
    ts.uncached(ts.image(verdict, image))
    return verdict


sav_evaluate = build()
