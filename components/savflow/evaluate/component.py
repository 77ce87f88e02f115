"""KFP components of the evaluate step: wiring only; :mod:`savflow.evaluate.run` does the work."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics, Output

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def resolve_checkpoint(checkpoint: str, experiment_dir: str) -> str:
    """``checkpoint`` when given, else the model file of the newest complete checkpoint of ``experiment_dir``."""
    import logging

    from savflow.common.checkpoints import newest_model

    logging.basicConfig(level=logging.INFO)
    return checkpoint or newest_model(experiment_dir)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_evaluations(benchmarks: list, staged_val: str, val_video_list: str, eval_dir: str, checkpoint: str = "",
                     pred_root: str = "", baseline: float = -1.0) -> List[str]:
    """The run's evaluations, one ParallelFor item each (:func:`savflow.evaluate.suite.plan`, a JSON object with
    every folder its steps take): the single one of ``staged_val`` when ``benchmarks`` is empty, else one per
    ``{name, staged_val, benchmark}`` item. Fails naming the item when the list is wrong (an unknown benchmark,
    a name twice) or an evaluation has no videos, before any GPU is asked for.

    The checkpoint travels inside the items for the reason plan_inference_shards gives."""
    from savflow.evaluate.suite import check_inputs, plan

    planned = plan(benchmarks, staged_val=staged_val, video_list=val_video_list, eval_dir=eval_dir,
                   checkpoint=checkpoint, pred_root=pred_root, baseline=baseline)
    if benchmarks and (staged_val or val_video_list):
        print("benchmarks given: staged_val and val_video_list are not used")
    check_inputs(planned, predictions_given=bool(pred_root))
    for p in planned:
        print(f"{p.shown}: {p.benchmark or 'pipeline options'}, {p.masks} -> {p.eval_root}")
    return [p.to_json() for p in planned]


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(gt_root: str, pred_root: str, frames_root: str, output: str, metrics: Output[Metrics],
             table: Output[Markdown], overlays: Output[HTML], video_list: str = "", annotations_root: str = "",
             title: str = "SA-V evaluation", num_workers: int = 2, do_not_skip_first_last: bool = False,
             benchmark: str = "", name: str = "") -> float:
    """SA-V J&F of ``pred_root`` against ``gt_root`` (:func:`savflow.evaluate.run.evaluate_to`): results.csv,
    metrics.json and the reports under ``output``, and the same as KFP Metrics, Markdown and HTML.
    ``num_workers`` scoring processes: set it to the task's CPU limit (a pod sees all of the node's CPUs).
    ``do_not_skip_first_last``: also score the first and last annotated frames (SA-V val/test and the
    ``benchmark``'s rule skip them). ``benchmark``: score under that preset's protocol (and refuse predictions
    made otherwise); ``name``: the Metrics say it (``J&F davis``). Returns J&F (x100)."""
    import logging

    from savflow.evaluate.results import summary_text
    from savflow.evaluate.run import evaluate_to, kfp_metrics

    logging.basicConfig(level=logging.INFO)
    done = evaluate_to(gt_root, pred_root, output, video_list=video_list, annotations_root=annotations_root,
                       frames_root=frames_root, title=title, num_workers=num_workers,
                       skip_first_last=False if do_not_skip_first_last else None, progress=True,
                       benchmark=benchmark)
    print(summary_text(done.result))
    for key, value in kfp_metrics(done.result, name).items():
        metrics.log_metric(key, value)
    with open(table.path, "w") as fh:
        fh.write(done.markdown)
    with open(overlays.path, "w") as fh:
        fh.write(done.html or "")
    return done.result.global_scores.jf


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def check_regression(experiment_dir: str, run_id: str, evaluations: List[str], max_drop: float,
                     metrics: Output[Metrics], table: Output[Markdown]) -> str:
    """Record each of the run's ``evaluations`` (plan_evaluations items) in the experiment's history and fail
    when J&F fell by more than ``max_drop`` points against the previous evaluation of the same benchmark or
    against the item's baseline. Every evaluation is compared and recorded before the step fails; ``metrics``
    and ``table`` hold J&F and the change of each. Returns the comparisons' report."""
    from savflow.evaluate.suite import Planned, check

    verdict = check(experiment_dir, [Planned.from_json(e) for e in evaluations], run_id=run_id, max_drop=max_drop)
    for key, value in verdict.metrics.items():
        metrics.log_metric(key, value)
    with open(table.path, "w") as fh:
        fh.write(verdict.markdown)
    print(verdict.report)
    if not verdict.ok:
        raise RuntimeError(f"J&F regression ({', '.join(verdict.failed)}): {verdict.report}")
    return verdict.report


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def publish_finetune(base_jf: float, tuned_jf: float, experiment_dir: str, run_id: str, checkpoint: str,
                     eval_output: str, comparison: Output[Metrics]) -> float:
    """The fine-tune's headline: J&F before and after, their difference, and a line in the experiment's
    evaluation history (so the recurring evaluation compares against it). Returns the gain in points."""
    from savflow.evaluate import regression
    from savflow.evaluate.run import history_entry

    regression.append_history(experiment_dir, history_entry(eval_output, run_id=run_id, checkpoint=checkpoint))
    comparison.log_metric("J&F before fine-tuning", base_jf)
    comparison.log_metric("J&F after fine-tuning", tuned_jf)
    comparison.log_metric("J&F gain", tuned_jf - base_jf)
    print(f"J&F before fine-tuning {base_jf:.2f}, after {tuned_jf:.2f} ({tuned_jf - base_jf:+.2f})")
    return tuned_jf - base_jf
