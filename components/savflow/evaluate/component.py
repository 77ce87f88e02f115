"""KFP components of the evaluate step: wiring only; :mod:`savflow.evaluate.run` does the work."""

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
def evaluate(gt_root: str, pred_root: str, frames_root: str, output: str, metrics: Output[Metrics],
             table: Output[Markdown], overlays: Output[HTML], video_list: str = "", annotations_root: str = "",
             title: str = "SA-V evaluation", num_workers: int = 2, do_not_skip_first_last: bool = False) -> float:
    """SA-V J&F of ``pred_root`` against ``gt_root`` (:func:`savflow.evaluate.run.evaluate_to`): results.csv,
    metrics.json and the reports under ``output``, and the same as KFP Metrics, Markdown and HTML.
    ``num_workers`` scoring processes: set it to the task's CPU limit (a pod sees all of the node's CPUs).
    ``do_not_skip_first_last``: also score the first and last annotated frames (SA-V val/test skip them).
    Returns J&F (x100)."""
    import logging

    from savflow.evaluate.results import summary_text
    from savflow.evaluate.run import evaluate_to, kfp_metrics

    logging.basicConfig(level=logging.INFO)
    done = evaluate_to(gt_root, pred_root, output, video_list=video_list, annotations_root=annotations_root,
                       frames_root=frames_root, title=title, num_workers=num_workers,
                       skip_first_last=not do_not_skip_first_last, progress=True)
    print(summary_text(done.result))
    for name, value in kfp_metrics(done.result).items():
        metrics.log_metric(name, value)
    with open(table.path, "w") as fh:
        fh.write(done.markdown)
    with open(overlays.path, "w") as fh:
        fh.write(done.html or "")
    return done.result.global_scores.jf


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def check_regression(experiment_dir: str, run_id: str, checkpoint: str, eval_output: str, max_drop: float,
                     baseline: float = -1.0) -> str:
    """Record this evaluation in the experiment's history and fail when J&F fell by more than ``max_drop``
    points against the previous evaluation or against ``baseline`` (negative = no baseline)."""
    from savflow.evaluate.run import check_and_record

    verdict = check_and_record(experiment_dir, eval_output, run_id=run_id, checkpoint=checkpoint,
                               max_drop=max_drop, baseline=baseline if baseline >= 0 else None)
    report = "\n".join(verdict.messages)
    print(report)
    if not verdict.ok:
        raise RuntimeError(f"J&F regression: {report}")
    return report


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
