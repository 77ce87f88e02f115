"""The evaluations of one ``sav-evaluate`` run: the single one of ``staged_val``, or one per item of its
``benchmarks`` list, each scored under its benchmark's protocol (:mod:`savflow.common.benchmarks`).

:func:`plan` checks the list and turns it into one :class:`Planned` evaluation per item, with every folder the
steps of that evaluation take (KFP cannot call Python on a runtime value, so the paths are made here, with
:func:`savflow.common.savformat.split_paths`, rather than in the pipeline); the pipeline fans out over them.
:func:`check` then compares each with the experiment's history of *the same benchmark* (and its baseline) and
records it there, and writes the per-benchmark table.

Folders of a run (``{experiment_dir}/eval/{run id}``)::

    (no benchmarks)   pred/                      the predictions      ./metrics.json ...   the evaluation
    (benchmarks)      pred/{name}/               the predictions      {name}/metrics.json  the evaluation

so that ``pred_root`` (evaluate given predictions) is ``{an earlier run's folder}/pred`` either way: with
``benchmarks``, each benchmark's predictions are read from ``{pred_root}/{name}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from savflow.common import storage
from savflow.common.benchmarks import BENCHMARKS, benchmark as preset_of
from savflow.common.savformat import SavFormatError, check_name, split_paths

PRED_DIR = "pred"
REQUIRED_KEYS = ("name", "staged_val")
OPTIONAL_KEYS = ("benchmark", "video_list", "baseline")
TITLE = "evaluation"


class SuiteError(ValueError):
    """A ``benchmarks`` list (or staged data) that cannot be evaluated; the message names the item."""


@dataclass(frozen=True)
class Planned:
    """One evaluation of the run and every folder its steps take."""

    label: str  # the item's name ("" = the single evaluation of staged_val); not `name`, which a KFP loop item
    #             has of its own (``item.name`` would be the channel's name, not this field)
    benchmark: str  # the protocol preset, "" = the pipeline's own options
    title: str
    frames: str
    masks: str
    annotations: str
    video_list: str
    pred_root: str  # where inference writes the predictions, or where the given ones are
    eval_root: str  # results.csv, metrics.json, report.md, report.html
    checkpoint: str  # what the history records: the checkpoint, or the given predictions' URI
    baseline: float = -1.0  # a fixed J&F to compare with as well; negative = none

    @property
    def shown(self) -> str:
        return self.label or TITLE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> Planned:
        return cls(**(json.loads(text) if isinstance(text, str) else text))


def _where(index: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"benchmarks[{index}]" + (f" ({name!r})" if isinstance(name, str) and name else "")


def _item(index: int, item: Any) -> dict[str, Any]:
    """One ``benchmarks`` item, checked; ``benchmark`` defaults to the name."""
    where = _where(index, item)
    if not isinstance(item, dict):
        raise SuiteError(f"{where}: expected an object {{name, staged_val, benchmark}}, got {item!r}")
    unknown = sorted(set(item) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)}; an item has "
                         f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if not isinstance(item.get(k), str) or not item[k]]
    if missing:
        raise SuiteError(f"{where}: needs {' and '.join(missing)} (a non-empty string)")
    name = item["name"]
    try:
        check_name(name, what="benchmark name")
    except SavFormatError:
        raise SuiteError(f"{where}: the name must be a plain folder name (letters, digits, _ . -)") from None
    if name == PRED_DIR:
        raise SuiteError(f"{where}: {PRED_DIR!r} is the run's predictions folder; name the benchmark otherwise")
    bench = item.get("benchmark", name)
    if not isinstance(bench, str) or bench not in BENCHMARKS:
        raise SuiteError(f"{where}: unknown benchmark {bench!r}: expected one of {', '.join(BENCHMARKS)}")
    video_list = item.get("video_list", "")
    if not isinstance(video_list, str):
        raise SuiteError(f"{where}: video_list must be a URI string, got {video_list!r}")
    baseline = item.get("baseline")
    if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))
                                 or not math.isfinite(baseline)):
        raise SuiteError(f"{where}: baseline must be a number, got {baseline!r}")
    return {**item, "benchmark": bench, "video_list": video_list, "baseline": baseline}


def plan(benchmarks: list | None, *, staged_val: str, video_list: str, eval_dir: str, checkpoint: str = "",
         pred_root: str = "", baseline: float = -1.0) -> list[Planned]:
    """The run's evaluations: with no ``benchmarks`` the single one of ``staged_val`` (today's folders); else
    one per item, in order. With ``pred_root`` the predictions are given (no inference) and the history records
    their URI. ``baseline`` applies to the items that give none of their own. Raises :class:`SuiteError`
    naming the item at fault."""
    if not isinstance(benchmarks, list):
        raise SuiteError(f"benchmarks must be a list of {{name, staged_val, benchmark}} objects, got {benchmarks!r}")
    given = bool(pred_root)
    if not benchmarks:
        if not staged_val:
            raise SuiteError("staged_val is empty and benchmarks lists nothing: nothing to evaluate")
        paths = split_paths(staged_val)
        pred = pred_root or storage.join(eval_dir, PRED_DIR)
        return [Planned(label="", benchmark="", title=TITLE, frames=paths.frames, masks=paths.masks,
                        annotations=paths.annotations, video_list=video_list, pred_root=pred, eval_root=eval_dir,
                        checkpoint=pred if given else checkpoint, baseline=baseline)]
    items = [_item(i, item) for i, item in enumerate(benchmarks)]
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item["name"] in seen:
            raise SuiteError(f"{_where(i, item)}: the same name as benchmarks[{seen[item['name']]}]; names must "
                             "differ (each is a folder of the run and a history of its own)")
        seen[item["name"]] = i
    out = []
    for item in items:
        paths = split_paths(item["staged_val"])
        name = item["name"]
        pred = storage.join(pred_root, name) if given else storage.join(eval_dir, PRED_DIR, name)
        out.append(Planned(
            label=name, benchmark=item["benchmark"],
            title=f"{TITLE}: {name} ({preset_of(item['benchmark']).title} protocol)",
            frames=paths.frames, masks=paths.masks, annotations=paths.annotations, video_list=item["video_list"],
            pred_root=pred, eval_root=storage.join(eval_dir, name), checkpoint=pred if given else checkpoint,
            baseline=float(baseline if item["baseline"] is None else item["baseline"])))
    return out


def check_inputs(planned: list[Planned], *, predictions_given: bool) -> None:
    """Fail before any GPU is asked for when an evaluation has no videos to score: its ground truth folder (or,
    with given predictions, its predictions folder) is empty or missing. One listing each."""
    problems = []
    for i, p in enumerate(planned):
        where = f"benchmarks[{i}] ({p.label!r})" if p.label else "staged_val"
        for what, uri in (("ground truth", p.masks),) + ((("predictions", p.pred_root),) if predictions_given else ()):
            _files, folders = storage.list_children(uri)
            if not folders:
                problems.append(f"{where}: no videos under {uri} (the {what})")
    if problems:
        raise SuiteError("nothing to evaluate:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class SuiteVerdict:
    """The regression check of every evaluation of the run; ``ok`` is False when any of them regressed."""

    ok: bool
    report: str
    failed: list[str]
    metrics: dict[str, float]
    markdown: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def _fmt(value: float | None, sign: bool = False) -> str:
    return "" if value is None else (f"{value:+.2f}" if sign else f"{value:.2f}")


def check(experiment_dir: str, planned: list[Planned], *, run_id: str, max_drop: float) -> SuiteVerdict:
    """Compare each evaluation with the experiment's previous passing one of the same benchmark (and its
    baseline) and record it in the history (:func:`savflow.evaluate.run.check_and_record`); all are recorded
    even when an earlier one regressed."""
    from savflow.evaluate.run import check_and_record

    rows, sections, failed, metrics = [], [], [], {}
    for p in planned:
        verdict = check_and_record(experiment_dir, p.eval_root, run_id=run_id, checkpoint=p.checkpoint,
                                   max_drop=max_drop, baseline=p.baseline if p.baseline >= 0 else None,
                                   benchmark=p.label)
        scores = json.loads(storage.read_text(storage.join(p.eval_root, "metrics.json")))
        if not verdict.ok:
            failed.append(p.shown)
        tag = f" {p.label}" if p.label else ""
        metrics.update({f"J&F{tag}": scores["J&F"], f"J{tag}": scores["J"], f"F{tag}": scores["F"]})
        if verdict.delta_previous is not None:
            metrics[f"J&F change{tag}"] = verdict.delta_previous
        rows.append({"name": p.label, "benchmark": p.benchmark, "videos": scores["num_videos"],
                     "objects": scores["num_objects"], "J&F": scores["J&F"], "J": scores["J"], "F": scores["F"],
                     "previous": verdict.previous.j_and_f if verdict.previous else None,
                     "delta_previous": verdict.delta_previous, "delta_baseline": verdict.delta_baseline,
                     "passed": verdict.ok})
        sections.append("\n".join(verdict.messages) if not p.label else "\n".join(
            [f"{p.label} ({p.benchmark}): J&F {scores['J&F']:.2f}"] + [f"  {m}" for m in verdict.messages]))
    md = [f"# Regression check (max drop {max_drop:.2f} points)", "",
          "| benchmark | protocol | videos | objects | J&F | J | F | previous | change | vs baseline | verdict |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    md += [f"| {r['name'] or '(staged_val)'} | {r['benchmark'] or 'pipeline options'} | {r['videos']} | "
           f"{r['objects']} | {_fmt(r['J&F'])} | {_fmt(r['J'])} | {_fmt(r['F'])} | {_fmt(r['previous'])} | "
           f"{_fmt(r['delta_previous'], True)} | {_fmt(r['delta_baseline'], True)} | "
           f"{'passed' if r['passed'] else '**regressed**'} |" for r in rows]
    return SuiteVerdict(ok=not failed, report="\n".join(sections), failed=failed, metrics=metrics,
                        markdown="\n".join(md) + "\n", rows=rows)
