"""The compiled pipelines: structure, task settings in the platform spec, and compiling without torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from savflow.pipelines.compile import COMPILED_DIR
from kfp_driver import pod_resources

from savflow.common.deployment import CREDENTIALS_SECRET, GPU_RESOURCE, GPU_TOLERATION
from savflow.common.deployment import RUN_AS_USER as RUN_AS


def _docs(name: str) -> tuple[dict, dict]:
    pipeline, platform = yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict, dag: dict | None = None, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """Every task of the pipeline, ParallelFor bodies included, as (path, task)."""
    dag = dag or spec["root"]["dag"]
    for name, task in dag["tasks"].items():
        yield prefix + name, task
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            yield from _tasks(spec, component["dag"], f"{prefix}{name}/")


def _executor(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


@pytest.mark.parametrize("name", ["sav-finetune", "sav-evaluate"])
def test_every_step_runs_our_image_as_non_root_with_limits(name: str) -> None:
    spec, platform = _docs(name)
    executors = spec["deploymentSpec"]["executors"]
    assert executors, name
    for label, executor in executors.items():
        container = executor["container"]
        assert container["image"] == "{{$.inputs.parameters['pipelinechannel--image']}}", label
        resources = container["resources"]
        assert resources["cpuRequest"] == resources["cpuLimit"] and resources["memoryLimit"] > 0, label
        security = platform[label]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == str(RUN_AS), label
        assert platform[label]["secretAsVolume"][0]["secretName"] == CREDENTIALS_SECRET
        assert platform[label]["secretAsVolume"][0]["optional"] is True


@pytest.mark.parametrize("name", ["sav-finetune", "sav-evaluate"])
def test_inference_shards_get_a_gpu_scratch_volume_and_retries(name: str) -> None:
    spec, platform = _docs(name)
    infers = [(p, t) for p, t in _tasks(spec) if t["taskInfo"]["name"].startswith("infer")]
    assert infers and all("/" in p for p, _ in infers), "inference runs inside a ParallelFor"
    for _path, task in infers:
        label = _executor(spec, task)
        container = spec["deploymentSpec"]["executors"][label]["container"]
        pod = pod_resources(container, _root_defaults(spec))
        assert pod["limits"][GPU_RESOURCE] == "1", pod
        assert {"name": "TMPDIR", "value": "/scratch"} in container["env"]
        k8s = platform[label]
        assert k8s["genericEphemeralVolume"][0]["mountPath"] == "/scratch"
        assert k8s["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == "pipelinechannel--node_selector"
        assert k8s["tolerations"][0]["tolerationJson"]["componentInputParameter"] == "pipelinechannel--tolerations"
        assert task["retryPolicy"]["maxRetryCount"] == 3 and task["retryPolicy"]["backoffFactor"] == 2.0


def _root_defaults(spec: dict) -> dict[str, object]:
    """What a task's ``pipelinechannel--NAME`` inputs resolve to in a run with the pipeline's defaults."""
    params = spec["root"]["inputDefinitions"]["parameters"]
    return {f"pipelinechannel--{k}": v.get("defaultValue") for k, v in params.items()}


@pytest.mark.parametrize("name", ["sav-finetune", "sav-evaluate"])
def test_pod_resources_as_the_kfp_driver_derives_them(name: str) -> None:
    """Every task's limits as the backend driver computes them (tests/kfp_driver.py): only resources a node can
    offer (cpu, memory, the GPU device plugin's nvidia.com/gpu), and a GPU exactly on the inference tasks. The
    GPU model is a node-selector matter, never a resource name."""
    spec, _ = _docs(name)
    gpu_tasks = set()
    for path, task in _tasks(spec):
        component = spec["components"][task["componentRef"]["name"]]
        if "executorLabel" not in component:
            continue
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        pod = pod_resources(container, _root_defaults(spec))
        assert set(pod["limits"]) <= {"cpu", "memory", GPU_RESOURCE}, (path, pod)
        assert pod["limits"]["cpu"] == pod["requests"]["cpu"] and pod["limits"]["memory"] == pod["requests"]["memory"]
        if GPU_RESOURCE in pod["limits"]:
            gpu_tasks.add(task["taskInfo"]["name"])
    assert gpu_tasks and all(t.startswith("infer") for t in gpu_tasks), gpu_tasks


def test_finetune_shape_and_defaults() -> None:
    spec, _ = _docs("sav-finetune")
    tasks = dict(_tasks(spec))
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert {"validate train", "stage train", "stage val", "train", "plan shards (starting checkpoint)",
            "plan shards (fine-tuned)", "infer (starting checkpoint)", "infer (fine-tuned)",
            "evaluate (starting checkpoint)", "evaluate (fine-tuned)", "publish-finetune"} <= names
    assert sorted(tasks["train"]["dependentTasks"]) == ["for-loop-1", "validate-train"], \
        "training waits for every staging shard and for the validated video list"
    params = spec["root"]["inputDefinitions"]["parameters"]
    required = {k for k, v in params.items() if not v.get("isOptional")}
    assert required == {"raw_train", "raw_val", "staged_train", "staged_val", "experiment_dir", "init_checkpoint"}
    assert params["train_backend"]["defaultValue"] == "pytorchjob"
    assert params["tolerations"]["defaultValue"] == [dict(GPU_TOLERATION)]
    for path, task in tasks.items():
        if task["taskInfo"]["name"] in ("validate train", "train", "stage train", "stage val", "publish-finetune"):
            assert task["cachingOptions"] == {}, f"{path} must not be cached"


def test_finetune_validates_the_training_videos_before_anything_else() -> None:
    """Validation is a first step (beside preflight): staging (and so every GPU step) and training wait for it,
    and both take the list of the videos it passed (all of ``train_video_list``, or with ``drop_invalid`` the
    valid ones), checked with the same config, overrides and sample rate; the list reaches the staging shards
    in their loop items, and lives in this run's folder (made by a task: the run id is a whole input value)."""
    spec, _ = _docs("sav-finetune")
    tasks = dict(_tasks(spec))
    validate = tasks["validate-train"]
    assert validate["dependentTasks"] == ["run-folder"] and "dependentTasks" not in tasks["preflight"]
    assert sorted(tasks["shard-items"]["dependentTasks"]) == ["preflight", "validate-train"]
    assert "validate-train" in tasks["train"]["dependentTasks"]
    inputs = validate["inputs"]["parameters"]
    for name, param in (("train", "raw_train"), ("config", "train_config"), ("overrides", "train_overrides"),
                        ("video_list", "train_video_list"), ("sample_rate", "sample_rate"),
                        ("drop_invalid", "drop_invalid")):
        assert inputs[name]["componentInputParameter"] == param, name
    assert inputs["valid_list"]["runtimeValue"]["constant"] == \
        "{{$.inputs.parameters['pipelinechannel--run-folder-Output']}}/file_list.txt"
    assert tasks["run-folder"]["inputs"]["parameters"]["kind"]["runtimeValue"]["constant"] == "validate"
    passed = {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "validate-train"}}
    assert tasks["train"]["inputs"]["parameters"]["file_list"] == passed
    assert tasks["shard-items"]["inputs"]["parameters"]["video_list"] == passed
    stage_train = next(t for t in tasks.values() if t["taskInfo"]["name"] == "stage train")
    assert stage_train["inputs"]["parameters"]["video_list"]["parameterExpressionSelector"] == \
        'parseJson(string_value)["video_list"]'
    assert spec["root"]["inputDefinitions"]["parameters"]["drop_invalid"]["defaultValue"] is False


def test_evaluate_shape() -> None:
    """Two branches on ``pred_root`` (the compiler's dsl.If/Else: condition-branches-N with a condition-K DAG
    each): predict with the checkpoint, or evaluate the given predictions. Each plans its evaluations (the single
    one of ``staged_val``, or one per ``benchmarks`` item), runs a ParallelFor over them (with the inference
    shards' ParallelFor nested in the If branch's) and ends with one regression check over the plan; the
    pipeline's output is the one that ran (dsl.OneOf)."""
    spec, _ = _docs("sav-evaluate")
    tasks = dict(_tasks(spec))

    def leaf(path: str) -> str:
        return path.rsplit("/", 1)[-1]

    infer_dag = next(p.rsplit("/", 1)[0] for p in tasks if leaf(p) == "resolve-checkpoint")
    given_dag = next(p.rsplit("/", 1)[0] for p in tasks if leaf(p) == "plan-evaluations-2")
    assert infer_dag != given_dag
    assert tasks[f"{infer_dag}/plan-evaluations"]["dependentTasks"] == ["resolve-checkpoint"]
    for dag, plan, check in ((infer_dag, "plan-evaluations", "check-regression"),
                             (given_dag, "plan-evaluations-2", "check-regression-2")):
        [loop] = [p for p in tasks if p.startswith(dag + "/") and p.count("/") == dag.count("/") + 1
                  and "parameterIterator" in tasks[p]]
        assert tasks[loop]["parameterIterator"]["items"]["inputParameter"] == f"pipelinechannel--{plan}-Output"
        assert sorted(tasks[f"{dag}/{check}"]["dependentTasks"]) == sorted([leaf(loop), plan])
        assert tasks[f"{dag}/{check}"]["inputs"]["parameters"]["evaluations"]["taskOutputParameter"] == {
            "outputParameterKey": "Output", "producerTask": plan}
        evaluate = next(t for p, t in tasks.items() if p.startswith(loop + "/") and leaf(p).startswith("evaluate"))
        inputs = evaluate["inputs"]["parameters"]
        for name, field in (("gt_root", "masks"), ("pred_root", "pred_root"), ("output", "eval_root"),
                            ("benchmark", "benchmark"), ("name", "label"), ("title", "title")):
            assert inputs[name]["componentInputParameter"] == f"pipelinechannel--{plan}-Output-loop-item", name
            assert inputs[name]["parameterExpressionSelector"] == f'parseJson(string_value)["{field}"]', name
    assert not any(p.startswith(given_dag + "/") and leaf(p).startswith(("resolve", "plan-inference", "infer"))
                   for p in tasks)
    # kfp.local 2.17 hands a task in a ParallelFor the loop item in place of an enclosing loop's item (and of any
    # upstream output): the inference shards read nothing of the evaluation's item, all of it is in their own
    infers = [p for p in tasks if leaf(p) == "infer-shard"]
    assert len(infers) == 1 and infers[0].count("/") == infer_dag.count("/") + 3
    for value in tasks[infers[0]]["inputs"]["parameters"].values():
        assert "plan-evaluations" not in str(value), value
    for path, task in tasks.items():
        if leaf(path).startswith(("resolve-checkpoint", "plan-evaluations", "check-regression", "evaluate")):
            assert task["cachingOptions"] == {}, f"{path} reads the newest checkpoint or history"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["max_drop"]["defaultValue"] == 1.0 and params["checkpoint"]["defaultValue"] == ""
    assert params["pred_root"]["defaultValue"] == "" and params["do_not_skip_first_last"]["defaultValue"] is False
    assert params["benchmarks"]["defaultValue"] == [] and params["staged_val"]["defaultValue"] == ""
    assert {k for k, v in params.items() if not v.get("isOptional")} == {"experiment_dir"}
    output = spec["root"]["dag"]["outputs"]["parameters"]["Output"]["valueFromParameter"]
    branches = spec["components"][tasks[output["producerSubtask"]]["componentRef"]["name"]]["dag"]["outputs"]
    assert "valueFromOneof" in branches["parameters"][output["outputParameterKey"]]


@pytest.mark.parametrize("module", ["sav_finetune", "sav_evaluate"])
def test_local_build_has_no_cluster_settings(module: str, tmp_path: Path) -> None:
    """kfp.local honours retries and environment variables; the local build must leave them out."""
    import importlib

    from kfp import compiler

    build = importlib.import_module(f"savflow.pipelines.{module}").build
    compiler.Compiler().compile(build(cluster=False), str(tmp_path / "local.yaml"))
    text = (tmp_path / "local.yaml").read_text()
    assert "retryPolicy" not in text and "TMPDIR" not in text and "platforms:" not in text
    compiler.Compiler().compile(build(cluster=True), str(tmp_path / "cluster.yaml"))
    cluster = (tmp_path / "cluster.yaml").read_text()
    assert "retryPolicy" in cluster and "platforms:" in cluster


def test_compiling_needs_no_torch() -> None:
    code = ("import sys; import savflow.pipelines.sav_finetune, savflow.pipelines.sav_evaluate; "
            "heavy = sorted(m for m in ('torch', 'sam2', 'cv2') if m in sys.modules); print(heavy); "
            "sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["sav-finetune", "sav-evaluate"])
def test_readme_documents_every_parameter(name: str) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    spec, _ = _docs(name)
    missing = [p for p in spec["root"]["inputDefinitions"]["parameters"] if f"`{p}`" not in readme]
    assert not missing, f"README.md's parameter table lacks {missing}"
