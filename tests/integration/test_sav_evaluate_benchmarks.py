"""``sav-evaluate`` with ``benchmarks`` (issue 14, point 3), run by kfp.local on tiny generated splits.

Two benchmarks in one run: each is inferred with its protocol's prompting (``sav``: objects on frame 0 only;
``lvos``: objects appearing later tracked) into its own folder, scored with its rule, logged as its own Metrics
(``J&F sav``, ``J&F later``) and in the regression check's Markdown table, and compared with the experiment's
earlier evaluations of the same benchmark only. Then the same benchmarks from the given predictions (the
dsl.Else branch), a benchmark's own baseline failing the run, and the single evaluation of ``staged_val``
(inferred, then given) through the same ParallelFor. About 30 s on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from savflow.common import markers, storage
from savflow.common.demo_data import SyntheticSpec, write_val_split
from savflow.evaluate import regression
from savflow.pipelines.run_local import TINY_MODEL, run_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAV = SyntheticSpec(num_videos=2, num_frames=16, height=64, width=64, seed=5)
LATER = SyntheticSpec(num_videos=1, num_frames=16, height=64, width=64, seed=6, first_index=3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from savflow.train.init_weights import write_random_init_checkpoint

    root = tmp_path_factory.mktemp("bench")
    write_val_split(str(root / "sav"), SAV)
    write_val_split(str(root / "later"), LATER)
    return {"root": root, "benchmarks": [{"name": "sav", "staged_val": str(root / "sav")},
                                         {"name": "later", "staged_val": str(root / "later"), "benchmark": "lvos"}],
            "params": {"experiment_dir": str(root / "exp"), "model_config": TINY_MODEL, "infer_shards": 2,
                       "infer_device": "cpu",
                       "checkpoint": write_random_init_checkpoint(TINY_MODEL, str(root / "init.pt"), seed=1)}}


def _run(setup: dict, name: str, **params) -> tuple[str, Path]:
    """Run sav-evaluate into its own KFP root; returns the output and the run's local folder."""
    result = run_pipeline("sav-evaluate", {**setup["params"], **params}, setup["root"] / name)
    [run] = list((setup["root"] / name).iterdir())
    return result.output, run


def _executor_outputs(run: Path, task: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.rglob(f"{task}/executor_output.json"))]


@pytest.fixture(scope="module")
def first(setup: dict) -> tuple[str, Path, Path]:
    output, run = _run(setup, "kfp1", benchmarks=setup["benchmarks"])
    [eval_dir] = [p for p in (setup["root"] / "exp" / "eval").iterdir() if p.name != "history"]
    return output, run, eval_dir


def test_each_benchmark_is_inferred_and_scored_under_its_protocol(first, setup: dict) -> None:
    output, run, eval_dir = first
    scores = {b: json.loads((eval_dir / b / "metrics.json").read_text()) for b in ("sav", "later")}
    assert scores["sav"]["benchmark"] == "sav" and scores["later"]["benchmark"] == "lvos"
    assert scores["sav"]["num_videos"] == 2 and scores["later"]["num_videos"] == 1
    # the pipeline's track_later_objects (default true) is not what the sav protocol prompts with
    assert scores["sav"]["protocol"]["inference"]["track_later_objects"] is False
    assert scores["later"]["protocol"]["inference"]["track_later_objects"] is True
    made = markers.read_markers(str(eval_dir / "pred" / "later"), LATER.video_ids())
    assert all(m["track_later_objects"] for m in made.values())
    assert len(list(run.rglob("infer-shard/executor_output.json"))) == 3  # 2 shards of sav, 1 of later

    # each benchmark's J&F as its own Metrics, and all of them in the regression check's table and Metrics
    evaluated = {k: v for out in _executor_outputs(run, "evaluate")
                 for k, v in out["artifacts"]["metrics"]["artifacts"][0]["metadata"].items()}
    assert evaluated["J&F sav"] == pytest.approx(scores["sav"]["J&F"])
    assert evaluated["J&F later"] == pytest.approx(scores["later"]["J&F"])
    [check] = _executor_outputs(run, "check-regression")
    assert check["artifacts"]["metrics"]["artifacts"][0]["metadata"]["J&F later"] == pytest.approx(
        scores["later"]["J&F"])
    table = (run / "check-regression" / "table").read_text()
    assert f"| later | lvos | 1 | 2 | {scores['later']['J&F']:.2f} |" in table and "| sav | sav | 2 | 4 |" in table
    assert "sav (sav): J&F" in output and "no previous passing evaluation of later" in output
    assert [(e.benchmark, e.run) for e in regression.load_history(setup["params"]["experiment_dir"])] == [
        ("sav", eval_dir.name), ("later", eval_dir.name)]


def test_given_predictions_compare_with_the_same_benchmark_and_a_benchmark_baseline_fails(first, setup) -> None:
    _, _, eval_dir = first
    exp = setup["params"]["experiment_dir"]
    scores = json.loads((eval_dir / "later" / "metrics.json").read_text())
    output, run = _run(setup, "kfp2", benchmarks=setup["benchmarks"], pred_root=str(eval_dir / "pred"))
    assert not list(run.rglob("infer-shard")) and not list(run.rglob("resolve-checkpoint"))
    assert output.count("(+0.00)") == 2, output
    failing = [setup["benchmarks"][0], {**setup["benchmarks"][1], "baseline": scores["J&F"] + 10}]
    with pytest.raises(RuntimeError, match="check-regression"):
        _run(setup, "kfp3", benchmarks=failing, pred_root=str(eval_dir / "pred"))
    last = {e.benchmark: e for e in regression.load_history(exp)[-2:]}
    assert last["sav"].passed and not last["later"].passed
    assert last["later"].checkpoint == str(eval_dir / "pred" / "later")


def test_the_single_evaluation_runs_as_before(first, setup: dict) -> None:
    """No ``benchmarks``: ``staged_val`` with the pipeline's own options, folders and history entry as before
    the list existed; the benchmark entries are not its reference."""
    before = {p.name for p in (setup["root"] / "exp" / "eval").iterdir()}
    output, run = _run(setup, "kfp4", staged_val=str(setup["root"] / "sav"))
    assert output.startswith("no previous passing evaluation of this experiment")
    [new] = [p for p in (setup["root"] / "exp" / "eval").iterdir() if p.name not in before]
    assert storage.exists(str(new / "metrics.json")) and (new / "pred" / SAV.video_ids()[0]).is_dir()
    last = regression.load_history(setup["params"]["experiment_dir"])[-1]
    assert last.benchmark == "" and last.run == new.name
    [check] = _executor_outputs(run, "check-regression")
    assert "J&F" in check["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    # and its predictions given (the dsl.Else branch): the same score, compared with that run
    output, run = _run(setup, "kfp5", staged_val=str(setup["root"] / "sav"), pred_root=str(new / "pred"))
    assert "(+0.00)" in output and not list(run.rglob("infer-shard"))
    assert regression.load_history(setup["params"]["experiment_dir"])[-1].checkpoint == str(new / "pred")
