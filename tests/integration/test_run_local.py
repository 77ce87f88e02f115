"""The README's main job end to end: ``savflow run-local`` with kfp.local, then the recurring evaluation.

Real kfp.local execution of the compiled-for-local pipelines: staging, a local torchrun of the PyTorchJob
worker, two inference shards, the evaluator, and the regression check, on the seeded demo data set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from savflow.common import storage
from savflow.evaluate import regression
from savflow.pipelines.run_local import DemoSize, eval_dirs, run_local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> tuple[Path, dict, dict]:
    workdir = tmp_path_factory.mktemp("run-local")
    run = run_local("sav-finetune", workdir, {}, demo=DemoSize())
    exp = run.params["experiment_dir"]
    scores = {d.rsplit("/", 1)[-1]: json.loads(storage.read_text(storage.join(d, "metrics.json")))
              for d in eval_dirs(exp, 0)}
    return workdir, run.params, scores


def test_fine_tuning_beats_the_starting_checkpoint(finetuned) -> None:
    _, _, scores = finetuned
    assert set(scores) == {"base", "finetuned"}
    assert scores["base"]["num_videos"] == scores["finetuned"]["num_videos"] == 4
    assert scores["finetuned"]["J&F"] > scores["base"]["J&F"] + 5, scores
    # the held-out videos come with manual annotations, so the scores are split by SA-V size bucket too
    assert sum(b["objects"] for b in scores["finetuned"]["per_bucket"].values()) == 8


def test_the_run_leaves_checkpoints_history_and_ui_artifacts(finetuned) -> None:
    workdir, params, scores = finetuned
    exp = params["experiment_dir"]
    latest = json.loads(storage.read_text(storage.join(exp, "checkpoints", "latest.json")))
    assert latest["step"] == 320  # 8 videos x multiplier 4 x 10 epochs, batch 1
    history = regression.load_history(exp)
    assert len(history) == 1 and history[0].j_and_f == pytest.approx(scores["finetuned"]["J&F"])
    runs = list((workdir / "kfp").iterdir())
    assert len(runs) == 1
    overlays = list(runs[0].glob("evaluate*/overlays"))
    tables = list(runs[0].glob("evaluate*/table"))
    assert len(overlays) == len(tables) == 2
    assert all(p.read_text().startswith("<!doctype html>") and p.stat().st_size < 1_000_000 for p in overlays)
    assert all("| video | object | J&F |" in p.read_text() for p in tables)
    assert "<svg" in (runs[0] / "train" / "loss_curve").read_text()


def test_recurring_evaluation_passes_then_fails_below_a_baseline(finetuned) -> None:
    workdir, params, scores = finetuned
    ok = run_local("sav-evaluate", workdir, {}, demo=DemoSize())
    assert "no previous" not in ok.output and "(+0.00)" in ok.output
    with pytest.raises(RuntimeError, match="check-regression"):
        run_local("sav-evaluate", workdir, {"baseline": scores["finetuned"]["J&F"] + 10.0}, demo=DemoSize())
    history = regression.load_history(params["experiment_dir"])
    assert [e.passed for e in history] == [True, True, False], "each evaluation is recorded, the failing one too"


def test_recurring_evaluation_of_given_predictions(finetuned) -> None:
    """``pred_root`` set: no checkpoint is resolved and no inference runs (the dsl.Else branch, run by
    kfp.local's control-flow orchestrator); the given predictions score what they scored in the fine-tune,
    and the history records the predictions' URI in place of a checkpoint."""
    workdir, params, scores = finetuned
    [tuned] = [d for d in eval_dirs(params["experiment_dir"], 0) if d.endswith("/finetuned")]
    pred = storage.join(tuned, "pred")
    before = {p.name for p in (workdir / "kfp").iterdir()}
    run = run_local("sav-evaluate", workdir, {"pred_root": pred}, demo=DemoSize())
    [new] = [p for p in (workdir / "kfp").iterdir() if p.name not in before]
    # (the evaluate step runs inside the ParallelFor over the planned evaluations: for-loop-N-iteration-0/)
    assert not list(new.rglob("infer*")) and not list(new.rglob("resolve*")) and list(new.rglob("evaluate*"))
    last = regression.load_history(params["experiment_dir"])[-1]
    assert last.checkpoint == pred and last.j_and_f == pytest.approx(scores["finetuned"]["J&F"])
    assert "(+0.00)" in run.output
