"""One evaluation, whatever the entry: ``savflow evaluate`` and the KFP ``evaluate`` component both call
:func:`evaluate_to`, so the same inputs give the same files (results.csv, metrics.json, the Markdown table, the
HTML overlay page) and the same scores; and the history bookkeeping both pipelines do after it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any

from savflow.common import markers, storage
from savflow.common.benchmarks import Benchmark, benchmark as benchmark_preset, inference_differences
from savflow.common.videolists import read_video_list
from savflow.evaluate import regression
from savflow.evaluate.evaluator import EvalResult, EvaluationError, evaluate, size_buckets_from_manual
from savflow.evaluate.report import Roots, html_report, markdown_report
from savflow.evaluate.results import RESULTS_CSV, official_results_csv, scored_videos, write_results

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation produced: the scores, the files written, and the two report pages' text."""

    result: EvalResult
    files: dict[str, str]
    markdown: str
    html: str | None


def size_buckets(annotations_root: str) -> dict | None:
    """SA-V size buckets per object from the ``{video}_manual.json`` files staged under ``annotations_root``."""
    manual = [storage.join(annotations_root, n) for n in storage.list_prefix(annotations_root, recursive=False)
              if n.endswith("_manual.json")]
    return size_buckets_from_manual(manual) or None


def read_size_buckets(uri: str) -> dict:
    """A JSON ``{video: {obj: bucket}}`` file (e.g. SA-V ``masklet_size_bucket``)."""
    try:
        buckets = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{uri}: not valid JSON: {exc}") from exc
    if not isinstance(buckets, dict) or not all(isinstance(v, dict) for v in buckets.values()):
        raise EvaluationError(f"{uri}: must be a JSON object {{video: {{obj: bucket}}}}")
    return buckets


def evaluate_to(gt_root: str, pred_root: str, output: str, *, video_list: str = "", annotations_root: str = "",
                size_buckets_uri: str = "", frames_root: str = "", report_dir: str = "",
                title: str = "SA-V evaluation", num_workers: int = 1, strict: bool = False,
                skip_first_last: bool | None = None, progress: bool = False, max_failures: int = 0,
                metrics_json: str = "", benchmark: str = "") -> Evaluation:
    """Score ``pred_root`` against ``gt_root`` and write results.csv and metrics.json under ``output``, and
    ``report.md`` + ``report.html`` under ``report_dir`` (default: ``output``). Size buckets come from
    ``size_buckets_uri`` or the manual annotations under ``annotations_root``; the overlay page needs the
    frames (``frames_root``) and is left out without them. Up to ``max_failures`` videos with bad input are
    left out and listed instead of failing the evaluation. ``metrics_json``: another URI for a copy of
    metrics.json. The official tool's ``results.csv`` goes into ``pred_root`` too, where it writes it (a
    read-only prediction root only loses that copy, with a warning).
    ``benchmark``: a preset of :mod:`savflow.common.benchmarks`; it sets ``skip_first_last`` unless given, and
    predictions whose markers record other inference options than the preset's are refused (EvaluationError).
    ``skip_first_last`` defaults to True (SA-V val/test)."""
    preset = benchmark_preset(benchmark) if benchmark else None
    if skip_first_last is None:
        skip_first_last = preset.skip_first_last if preset else True
    buckets = (read_size_buckets(size_buckets_uri) if size_buckets_uri else
               size_buckets(annotations_root) if annotations_root else None)
    result = evaluate(gt_root, pred_root, read_video_list(video_list or None), strict=strict,
                      skip_first_last=skip_first_last, num_workers=num_workers, size_buckets=buckets,
                      progress=progress, max_failures=max_failures)
    result = dataclasses.replace(result, benchmark=benchmark,
                                 inference=inference_protocol(pred_root, scored_videos(result), preset))
    files = write_results(result, output)
    if metrics_json:
        storage.write_bytes(metrics_json, storage.read_bytes(files["json"]), content_type="application/json")
        files["metrics_json"] = metrics_json
    official = storage.join(pred_root, RESULTS_CSV)
    try:
        storage.write_text(official, official_results_csv(result))
        files["official_csv"] = official
    except storage.StorageError as exc:
        log.warning("the official-format results.csv was not written into the predictions folder: %s", exc)
    markdown = markdown_report(result, title=title)
    page = html_report(result, Roots(frames=frames_root, gt=gt_root, pred=pred_root), title=title) \
        if frames_root else None
    reports = report_dir or output
    storage.write_text(storage.join(reports, REPORT_MD), markdown)
    files["markdown"] = storage.join(reports, REPORT_MD)
    if page is not None:
        storage.write_text(storage.join(reports, REPORT_HTML), page)
        files["html"] = storage.join(reports, REPORT_HTML)
    return Evaluation(result, files, markdown, page)


def inference_protocol(pred_root: str, videos: list[str], preset: Benchmark | None) -> dict | None:
    """The inference options (``savflow infer``'s markers under ``pred_root``) the scored videos were predicted
    with, when every video has a marker and they agree; None otherwise (predictions made elsewhere). With a
    ``preset``, a video predicted otherwise than the preset says is an :class:`EvaluationError` naming the video
    and the option, since its score would not be the benchmark's."""
    found = markers.read_markers(pred_root, videos)
    if preset is not None:
        wrong = [f"{video}: {option} was {made}, the {preset.name} protocol has {wanted}"
                 for video, marker in found.items() if marker
                 for option, (made, wanted) in inference_differences(preset, marker).items()]
        if wrong:
            raise EvaluationError(f"{pred_root}: predictions made otherwise than the {preset.title} protocol "
                                  "(run savflow infer --benchmark " + preset.name + " --overwrite):\n  "
                                  + "\n  ".join(wrong[:20]))
    options = ("use_all_masks", "track_later_objects", "score_thresh")
    seen = {json.dumps({k: m.get(k) for k in options}, sort_keys=True) for m in found.values() if m}
    if not found or None in found.values() or len(seen) != 1:
        return None
    return json.loads(seen.pop())


def kfp_metrics(result: EvalResult, label: str = "") -> dict[str, float]:
    """The KFP Metrics of an evaluation: J&F, J, F, the object count, and J&F per size bucket; with a ``label``
    (a benchmark's name) each name says it: ``J&F davis``, ``J&F davis small``."""
    total = result.global_scores
    tag = f" {label}" if label else ""
    out = {f"J&F{tag}": total.jf, f"J{tag}": total.j, f"F{tag}": total.f, f"objects{tag}": float(total.objects)}
    out.update({f"J&F{tag} {bucket}": scores.jf for bucket, scores in result.per_bucket().items()})
    return out


def history_entry(eval_output: str, *, run_id: str, checkpoint: str, benchmark: str = "") -> regression.HistoryEntry:
    """The history line of the evaluation whose metrics.json is under ``eval_output`` (of the named
    ``benchmark`` of sav-evaluate's list, "" for the single evaluation)."""
    import hashlib

    scores: dict[str, Any] = json.loads(storage.read_text(storage.join(eval_output, "metrics.json")))
    protocol = json.dumps(scores.get("protocol", {"skip_first_last": scores.get("skip_first_last", True)}),
                          sort_keys=True)
    return regression.HistoryEntry(
        run=run_id, checkpoint=checkpoint, j_and_f=scores["J&F"], j=scores["J"], f=scores["F"],
        num_videos=scores["num_videos"], num_objects=scores["num_objects"],
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        video_set=scores.get("video_set", ""), protocol=hashlib.sha256(protocol.encode()).hexdigest()[:16],
        benchmark=benchmark)


def check_and_record(experiment_dir: str, eval_output: str, *, run_id: str, checkpoint: str, max_drop: float,
                     baseline: float | None, benchmark: str = "") -> regression.Verdict:
    """Compare this evaluation with the experiment's history (of the same ``benchmark``) and ``baseline``, then
    append it (with the verdict) to the history."""
    import dataclasses

    entry = history_entry(eval_output, run_id=run_id, checkpoint=checkpoint, benchmark=benchmark)
    verdict = regression.compare(entry, regression.load_history(experiment_dir), baseline=baseline,
                                 max_drop=max_drop)
    regression.append_history(experiment_dir, dataclasses.replace(entry, passed=verdict.ok))
    return verdict
