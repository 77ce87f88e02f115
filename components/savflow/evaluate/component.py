"""KFP components of the evaluate step: scores, UI artifacts, and the recurring run's checkpoint and verdict."""

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics, Output

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def resolve_checkpoint(checkpoint: str, experiment_dir: str) -> str:
    """``checkpoint`` when given, else the model file of the newest complete checkpoint of ``experiment_dir``."""
    from savflow.common.checkpoints import latest_checkpoint

    if checkpoint:
        return checkpoint
    latest = latest_checkpoint(experiment_dir)
    if latest is None:
        raise RuntimeError(f"{experiment_dir}: no complete checkpoint to evaluate")
    print(f"newest checkpoint: step {latest.step}: {latest.model}")
    return latest.model


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(gt_root: str, pred_root: str, frames_root: str, output: str, metrics: Output[Metrics],
             table: Output[Markdown], overlays: Output[HTML], video_list: str = "", annotations_root: str = "",
             title: str = "SA-V evaluation", num_workers: int = 2) -> float:
    """SA-V J&F of ``pred_root`` against ``gt_root``: results.csv and metrics.json under ``output``, KFP Metrics
    (J&F, J, F, and per size bucket when ``annotations_root`` has the manual JSONs), a Markdown table and an HTML
    page of overlays. ``num_workers`` scoring processes: set it to the task's CPU limit (a pod sees all of the
    node's CPUs). Returns J&F (x100)."""
    import logging

    from savflow.common import storage
    from savflow.common.videolists import read_video_list
    from savflow.evaluate.evaluator import evaluate as run_evaluation
    from savflow.evaluate.evaluator import size_buckets_from_manual
    from savflow.evaluate.report import Roots, html_report, markdown_report
    from savflow.evaluate.results import summary_text, write_results

    logging.basicConfig(level=logging.INFO)
    buckets = None
    if annotations_root:
        manual = [storage.join(annotations_root, n) for n in storage.list_prefix(annotations_root, recursive=False)
                  if n.endswith("_manual.json")]
        buckets = size_buckets_from_manual(manual) or None
    result = run_evaluation(gt_root, pred_root, read_video_list(video_list), num_workers=num_workers,
                            size_buckets=buckets)
    write_results(result, output)
    print(summary_text(result))
    total = result.global_scores
    for name, value in (("J&F", total.jf), ("J", total.j), ("F", total.f)):
        metrics.log_metric(name, value)
    metrics.log_metric("objects", total.objects)
    for bucket, scores in result.per_bucket().items():
        metrics.log_metric(f"J&F {bucket}", scores.jf)
    with open(table.path, "w") as fh:
        fh.write(markdown_report(result, title=title))
    with open(overlays.path, "w") as fh:
        fh.write(html_report(result, Roots(frames=frames_root, gt=gt_root, pred=pred_root), title=title))
    return total.jf


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def check_regression(experiment_dir: str, run_id: str, checkpoint: str, eval_output: str, max_drop: float,
                     baseline: float = -1.0) -> str:
    """Record this evaluation in the experiment's history and fail when J&F fell by more than ``max_drop``
    points against the previous evaluation or against ``baseline`` (negative = no baseline)."""
    import dataclasses
    import datetime
    import json

    from savflow.common import storage
    from savflow.evaluate import regression

    scores = json.loads(storage.read_text(storage.join(eval_output, "metrics.json")))
    entry = regression.HistoryEntry(
        run=run_id, checkpoint=checkpoint, j_and_f=scores["J&F"], j=scores["J"], f=scores["F"],
        num_videos=scores["num_videos"], num_objects=scores["num_objects"],
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    verdict = regression.compare(entry, regression.load_history(experiment_dir),
                                 baseline=baseline if baseline >= 0 else None, max_drop=max_drop)
    regression.append_history(experiment_dir, dataclasses.replace(entry, passed=verdict.ok))
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
    import datetime
    import json

    from savflow.common import storage
    from savflow.evaluate import regression

    scores = json.loads(storage.read_text(storage.join(eval_output, "metrics.json")))
    regression.append_history(experiment_dir, regression.HistoryEntry(
        run=run_id, checkpoint=checkpoint, j_and_f=scores["J&F"], j=scores["J"], f=scores["F"],
        num_videos=scores["num_videos"], num_objects=scores["num_objects"],
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
    comparison.log_metric("J&F before fine-tuning", base_jf)
    comparison.log_metric("J&F after fine-tuning", tuned_jf)
    comparison.log_metric("J&F gain", tuned_jf - base_jf)
    print(f"J&F before fine-tuning {base_jf:.2f}, after {tuned_jf:.2f} ({tuned_jf - base_jf:+.2f})")
    return tuned_jf - base_jf
