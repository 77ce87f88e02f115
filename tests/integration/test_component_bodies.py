"""Every KFP component's body, called as a Python function (``component.python_func``) on local folders.

The bodies only wire inputs and outputs to tested functions; these tests show that the wiring works for each
one, with the artifacts KFP would hand them (kfp.dsl Metrics/Markdown/HTML on local paths), in seconds and
without a pipeline run. (The preflight component's body is tested in tests/unit/test_preflight.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, Markdown, Metrics

from savflow.common import checkpoints, savformat, storage
from savflow.common.demo_data import SyntheticSpec, write_raw_train_split, write_val_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = "sam2.1_hiera_tiny128"


def _artifact(cls, name: str, root: Path):  # noqa: ANN001, ANN202 - a kfp.dsl artifact class
    """An output artifact as KFP's executor hands it over: a local path whose folder exists."""
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return cls(name=name, uri=str(root / "artifacts" / name))


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> tuple[str, list[str]]:
    root = str(tmp_path_factory.mktemp("val") / "val")
    return root, write_val_split(root, SyntheticSpec(num_videos=2, num_frames=16, height=64, width=64, seed=2))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    from savflow.train.init_weights import write_random_init_checkpoint

    return write_random_init_checkpoint(TINY, str(tmp_path_factory.mktemp("ckpt") / "init.pt"), seed=1)


def test_stage_components(tmp_path: Path) -> None:
    from savflow.stage.component import shard_items, stage_shard

    assert shard_items.python_func(num_shards=2, video_list="l.txt") == [{"shard": 0, "video_list": "l.txt"},
                                                                         {"shard": 1, "video_list": "l.txt"}]
    raw, dest = str(tmp_path / "raw"), str(tmp_path / "staged")
    write_raw_train_split(raw, SyntheticSpec(num_videos=2, num_frames=16, height=64, width=64))
    report = stage_shard.python_func(source=raw, dest=dest, shard=0, num_shards=1, sample_rate=4)
    assert json.loads(storage.read_text(report))["done"] == 2


def test_infer_components(tmp_path: Path, val: tuple[str, list[str]], model: str) -> None:
    """The shard items carry the folders and the benchmark (sav-evaluate's nested ParallelFor gives infer_shard
    nothing else): a shard run from its item alone is prompted as the benchmark's protocol says, whatever the
    inputs say."""
    from savflow.common import markers
    from savflow.infer.component import infer_shard, plan_inference_shards

    root, videos = val
    paths = savformat.split_paths(root)
    out = str(tmp_path / "pred")
    shards = plan_inference_shards.python_func(frames=paths.frames, masks=paths.masks, num_shards=2,
                                               checkpoint=model, output=out, benchmark="lvos")
    assert sorted(v for s in shards for v in json.loads(s)["videos"]) == sorted(videos)
    assert {json.loads(s)["output"] for s in shards} == {out}
    first, second = shards
    report = infer_shard.python_func(shard=first, model_config=TINY, frames=paths.frames, masks=paths.masks,
                                     output=out, device="cpu")
    assert json.loads(storage.read_text(report))["failed"] == 0
    report = infer_shard.python_func(shard=second, model_config=TINY, device="cpu", track_later_objects=False)
    assert json.loads(storage.read_text(report))["failed"] == 0
    found = markers.read_markers(out, videos)
    assert all(m and m["track_later_objects"] is True and m["use_all_masks"] is False for m in found.values())
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        plan_inference_shards.python_func(frames=paths.frames, masks=paths.masks, num_shards=1, checkpoint=model,
                                          benchmark="nope")


def test_plan_evaluations_component(tmp_path: Path, val: tuple[str, list[str]], model: str) -> None:
    from savflow.evaluate.component import plan_evaluations

    root, _ = val
    eval_dir = str(tmp_path / "exp" / "eval" / "run1")
    [single] = plan_evaluations.python_func(benchmarks=[], staged_val=root, val_video_list="", eval_dir=eval_dir,
                                            checkpoint=model)
    item = json.loads(single)
    assert (item["label"], item["eval_root"], item["pred_root"]) == ("", eval_dir, f"{eval_dir}/pred")
    assert item["masks"] == savformat.split_paths(root).masks and item["checkpoint"] == model
    two = [json.loads(i) for i in plan_evaluations.python_func(
        benchmarks=[{"name": "sav", "staged_val": root}, {"name": "far", "staged_val": root, "benchmark": "lvos"}],
        staged_val="", val_video_list="", eval_dir=eval_dir, checkpoint=model)]
    assert [(i["label"], i["benchmark"], i["eval_root"], i["pred_root"]) for i in two] == [
        ("sav", "sav", f"{eval_dir}/sav", f"{eval_dir}/pred/sav"),
        ("far", "lvos", f"{eval_dir}/far", f"{eval_dir}/pred/far")]
    with pytest.raises(ValueError, match=r"benchmarks\[1\] \('far'\): unknown benchmark 'davis2017'"):
        plan_evaluations.python_func(benchmarks=[{"name": "sav", "staged_val": root},
                                                 {"name": "far", "staged_val": root, "benchmark": "davis2017"}],
                                     staged_val="", val_video_list="", eval_dir=eval_dir, checkpoint=model)
    with pytest.raises(ValueError, match=r"benchmarks\[0\] \('davis'\): no videos under .*/nothing/Annotations_6fps"):
        plan_evaluations.python_func(benchmarks=[{"name": "davis", "staged_val": str(tmp_path / "nothing")}],
                                     staged_val="", val_video_list="", eval_dir=eval_dir, checkpoint=model)


def test_evaluate_components(tmp_path: Path, val: tuple[str, list[str]], model: str) -> None:
    from savflow.evaluate.component import check_regression, evaluate, publish_finetune, resolve_checkpoint

    root, _ = val
    paths = savformat.split_paths(root)
    exp = str(tmp_path / "exp")
    storage.write_bytes(storage.join(checkpoints.step_dir(exp, 4), checkpoints.MODEL_ONLY), b"weights")
    from savflow.common import markers

    markers.write_marker(checkpoints.checkpoints_root(exp), checkpoints.step_name(4), {"epoch": 1})
    assert resolve_checkpoint.python_func(checkpoint="", experiment_dir=exp).endswith("000000004/model.pt")
    assert resolve_checkpoint.python_func(checkpoint=model, experiment_dir=exp) == model

    artifacts = {name: _artifact(cls, name, tmp_path)
                 for name, cls in (("metrics", Metrics), ("table", Markdown), ("overlays", HTML))}
    out = str(tmp_path / "eval")
    # the ground truth scored as its own prediction: J&F 100
    jf = evaluate.python_func(gt_root=paths.masks, pred_root=paths.masks, frames_root=paths.frames, output=out,
                              **artifacts, num_workers=1)
    assert jf == pytest.approx(100.0)
    assert artifacts["metrics"].metadata["J&F"] == pytest.approx(100.0)
    assert "J&F" in Path(artifacts["table"].path).read_text()
    assert Path(artifacts["overlays"].path).read_text().startswith("<!doctype html>")
    assert storage.exists(storage.join(out, "metrics.json")) and storage.exists(storage.join(out, "report.md"))
    named = {name: _artifact(cls, f"davis-{name}", tmp_path)
             for name, cls in (("metrics", Metrics), ("table", Markdown), ("overlays", HTML))}
    evaluate.python_func(gt_root=paths.masks, pred_root=paths.masks, frames_root=paths.frames,
                         output=str(tmp_path / "davis"), **named, num_workers=1, benchmark="davis", name="d17")
    assert named["metrics"].metadata["J&F d17"] == pytest.approx(100.0) and "J&F" not in named["metrics"].metadata
    assert json.loads(storage.read_text(str(tmp_path / "davis" / "metrics.json")))["benchmark"] == "davis"

    from savflow.evaluate.component import plan_evaluations

    def check(run_id: str, baseline: float = -1.0) -> str:
        planned = plan_evaluations.python_func(benchmarks=[], staged_val=root, val_video_list="", eval_dir=out,
                                               checkpoint=model, baseline=baseline)
        outputs = {name: _artifact(cls, f"{run_id}-{name}", tmp_path) for name, cls in (("metrics", Metrics),
                                                                                         ("table", Markdown))}
        report = check_regression.python_func(experiment_dir=exp, run_id=run_id, evaluations=planned, max_drop=1.0,
                                              **outputs)
        assert outputs["metrics"].metadata["J&F"] == pytest.approx(100.0)
        assert "| (staged_val) | pipeline options | 2 |" in Path(outputs["table"].path).read_text()
        return report

    assert "no previous passing evaluation" in check("r1")
    with pytest.raises(RuntimeError, match="regression"):
        check("r2", baseline=100.0 + 5)
    comparison = _artifact(Metrics, "comparison", tmp_path)
    gain = publish_finetune.python_func(base_jf=40.0, tuned_jf=55.5, experiment_dir=exp, run_id="r3",
                                        checkpoint=model, eval_output=out, comparison=comparison)
    assert gain == pytest.approx(15.5) and comparison.metadata["J&F gain"] == pytest.approx(15.5)
    from savflow.evaluate.regression import load_history

    assert [e.run for e in load_history(exp)] == ["r1", "r2", "r3"]


def test_train_component_local_backend(tmp_path: Path, model: str) -> None:
    """The train component on the local backend: torchrun of the worker, one short epoch, then the Metrics and
    the HTML page from what the worker published."""
    from savflow.common.demo_data import write_staged_train_split
    from savflow.launch.component import train

    staged = str(tmp_path / "staged")
    write_staged_train_split(staged, SyntheticSpec(num_videos=2, num_frames=40, height=128, width=128, seed=3))
    paths = savformat.split_paths(staged)
    metrics = _artifact(Metrics, "train_metrics", tmp_path)
    curve = _artifact(HTML, "loss_curve.html", tmp_path)
    exp = str(tmp_path / "exp")
    params = dict(image="ghcr.io/savflow/savflow:0.1.0", config="sam2.1_tiny128_sav_finetune",
                  train_frames=paths.frames, train_annotations=paths.annotations, experiment_dir=exp,
                  run_id="run-1", train_metrics=metrics, loss_curve=curve, node_selector={},
                  tolerations=[], checkpoint=model, epochs=1, backend="local", gpus_per_node=0,
                  overrides=["scratch.num_frames=3", "dataset.multiplier=1"])
    uri = train.python_func(**params)
    assert uri == checkpoints.read_latest_pointer(exp).model and storage.exists(uri)
    assert metrics.metadata["steps"] >= 1
    assert "<svg" in Path(curve.path).read_text()
    # Another run into this experiment (other overrides) fails in the step itself, before any job or torchrun.
    with pytest.raises(checkpoints.ExperimentExistsError, match="made by another run: config_digest: .*overrides"):
        train.python_func(**{**params, "overrides": ["scratch.num_frames=2", "dataset.multiplier=1"]})


def test_run_folder_component() -> None:
    from savflow.pipelines.run_folders import run_folder

    assert run_folder.python_func(parent="gs://b/exp", kind="eval", run_id="0f2c") == "gs://b/exp/eval/0f2c"
    assert run_folder.python_func(parent="/data/exp/", kind="validate", run_id="r1") == "/data/exp/validate/r1"
