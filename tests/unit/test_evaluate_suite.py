"""sav-evaluate's evaluations (issue 14, point 3): the ``benchmarks`` list checked and planned into folders, and
the regression check of each benchmark against its own history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from savflow.common import storage
from savflow.common.savformat import split_paths
from savflow.evaluate import regression, suite

EVAL = "gs://b/exp/eval/run1"


def plan(benchmarks, **kw):  # noqa: ANN001, ANN201
    return suite.plan(benchmarks, **{"staged_val": "", "video_list": "", "eval_dir": EVAL, "checkpoint": "ck.pt",
                                     **kw})


def test_no_benchmarks_is_the_single_evaluation_in_the_folders_of_before() -> None:
    [one] = plan([], staged_val="gs://b/val/", video_list="gs://b/list.txt", baseline=70.0)
    paths = split_paths("gs://b/val")
    assert (one.frames, one.masks, one.annotations) == (paths.frames, paths.masks, paths.annotations)
    assert (one.label, one.benchmark, one.title, one.video_list) == ("", "", "evaluation", "gs://b/list.txt")
    assert (one.pred_root, one.eval_root, one.checkpoint, one.baseline) == (f"{EVAL}/pred", EVAL, "ck.pt", 70.0)
    [given] = plan([], staged_val="gs://b/val", pred_root="gs://b/old/pred")
    assert (given.pred_root, given.eval_root, given.checkpoint) == ("gs://b/old/pred", EVAL, "gs://b/old/pred")
    with pytest.raises(suite.SuiteError, match="staged_val is empty and benchmarks lists nothing"):
        plan([])


def test_one_evaluation_per_benchmark_with_its_own_folders() -> None:
    items = plan([{"name": "sav", "staged_val": "gs://b/sav/val"},
                  {"name": "d17", "staged_val": "gs://b/davis", "benchmark": "davis", "video_list": "gs://b/d.txt",
                   "baseline": 88}], staged_val="gs://b/ignored", baseline=60.0)
    assert [(p.label, p.benchmark, p.masks, p.pred_root, p.eval_root, p.baseline) for p in items] == [
        ("sav", "sav", "gs://b/sav/val/Annotations_6fps", f"{EVAL}/pred/sav", f"{EVAL}/sav", 60.0),
        ("d17", "davis", "gs://b/davis/Annotations_6fps", f"{EVAL}/pred/d17", f"{EVAL}/d17", 88.0)]
    assert items[1].video_list == "gs://b/d.txt" and items[0].video_list == ""
    assert items[1].title == "evaluation: d17 (DAVIS 2017 protocol)"
    given = plan([{"name": "sav", "staged_val": "gs://b/sav/val"}], pred_root="gs://b/old/pred")
    assert (given[0].pred_root, given[0].checkpoint) == ("gs://b/old/pred/sav", "gs://b/old/pred/sav")
    assert suite.Planned.from_json(items[1].to_json()) == items[1]


@pytest.mark.parametrize(("benchmarks", "message"), [
    ([{"name": "x", "staged_val": "gs://b/x", "benchmark": "davis16"}],
     r"benchmarks\[0\] \('x'\): unknown benchmark 'davis16': expected one of sav, davis, mose, lvos, ytvos"),
    ([{"name": "davis2017", "staged_val": "gs://b/x"}], r"benchmarks\[0\] \('davis2017'\): unknown benchmark"),
    ([{"name": "sav", "staged_val": "gs://b/a"}, {"name": "sav", "staged_val": "gs://b/b"}],
     r"benchmarks\[1\] \('sav'\): the same name as benchmarks\[0\]"),
    ([{"name": "sav"}], r"benchmarks\[0\] \('sav'\): needs staged_val"),
    ([{"staged_val": "gs://b/a", "benchmark": "sav"}], r"benchmarks\[0\]: needs name"),
    ([{"name": "sav", "staged_val": "gs://b/a", "prompt": "all"}], r"unknown key\(s\) prompt"),
    ([{"name": "a/b", "staged_val": "gs://b/a", "benchmark": "sav"}], "plain folder name"),
    ([{"name": "pred", "staged_val": "gs://b/a", "benchmark": "sav"}], "the run's predictions folder"),
    ([{"name": "sav", "staged_val": "gs://b/a", "baseline": "high"}], "baseline must be a number"),
    (["sav"], r"benchmarks\[0\]: expected an object"),
])
def test_a_wrong_list_names_the_item(benchmarks: list, message: str) -> None:
    with pytest.raises(suite.SuiteError, match=message):
        plan(benchmarks)


def test_an_evaluation_without_videos_fails_before_inference(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    (staged / "Annotations_6fps" / "v1").mkdir(parents=True)
    items = plan([{"name": "sav", "staged_val": str(staged)}, {"name": "mose", "staged_val": str(tmp_path / "no")}],
                 eval_dir=str(tmp_path / "eval"))
    with pytest.raises(suite.SuiteError, match=r"benchmarks\[1\] \('mose'\): no videos under .*/no/Annotations_6fps"):
        suite.check_inputs(items, predictions_given=False)
    suite.check_inputs(items[:1], predictions_given=False)
    with pytest.raises(suite.SuiteError, match=r"\('sav'\): no videos under .*/pred/sav \(the predictions\)"):
        suite.check_inputs(items[:1], predictions_given=True)


def _scores(root: Path, jf: float, video_set: str = "v") -> str:
    storage.write_text(str(root / "metrics.json"), json.dumps({
        "J&F": jf, "J": jf - 1, "F": jf + 1, "num_videos": 2, "num_objects": 3, "video_set": video_set,
        "protocol": {"skip_first_last": True}}))
    return str(root)


def test_each_benchmark_is_compared_with_its_own_history(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")

    def run(run_id: str, jfs: dict[str, float], **baselines: float) -> suite.SuiteVerdict:
        planned = [suite.Planned(label=name, benchmark="davis", title="t", frames="", masks="", annotations="",
                                 video_list="", pred_root="", checkpoint="ck",
                                 eval_root=_scores(tmp_path / run_id / name, jf), baseline=baselines.get(name, -1))
                   for name, jf in jfs.items()]
        return suite.check(exp, planned, run_id=run_id, max_drop=1.0)

    first = run("r1", {"a": 50.0, "b": 80.0})
    assert first.ok and "a (davis): J&F 50.00\n  no previous passing evaluation of a" in first.report
    # same videos and protocol, other names: b's 80 is not a's reference
    second = run("r2", {"a": 49.5, "b": 70.0})
    assert not second.ok and second.failed == ["b"]
    assert "J&F 49.50 vs previous run r1 50.00 (-0.50)" in second.report
    assert "J&F fell by 10.00 points since run r1" in second.report
    assert second.metrics["J&F a"] == 49.5 and second.metrics["J&F change b"] == pytest.approx(-10.0)
    assert "| b | davis | 2 | 3 | 70.00 | 69.00 | 71.00 | 80.00 | -10.00 |  | **regressed** |" in second.markdown
    # the failing b is recorded but is not b's reference; a's own baseline fails it alone
    third = run("r3", {"a": 49.5, "b": 79.5}, a=55.0)
    assert third.failed == ["a"] and "vs previous run r1 80.00 (-0.50)" in third.report
    history = regression.load_history(exp)
    assert [(e.run, e.benchmark, e.passed) for e in history] == [
        ("r1", "a", True), ("r1", "b", True), ("r2", "a", True), ("r2", "b", False), ("r3", "a", False),
        ("r3", "b", True)]
    assert sorted(p.name for p in (tmp_path / "exp" / "eval" / "history").iterdir())[:2] == ["r1.a.json", "r1.b.json"]


def test_the_single_evaluation_reports_as_before(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    [one] = plan([], staged_val="gs://b/val", eval_dir=_scores(tmp_path / "r1", 60.0))
    verdict = suite.check(exp, [one], run_id="r1", max_drop=1.0)
    assert verdict.report == "no previous passing evaluation of this experiment"
    assert verdict.metrics == {"J&F": 60.0, "J": 59.0, "F": 61.0}
    assert "| (staged_val) | pipeline options |" in verdict.markdown
    [entry] = regression.load_history(exp)
    assert entry.benchmark == "" and "benchmark" not in json.loads(entry.to_line())
