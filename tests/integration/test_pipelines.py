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
    assert {"stage train", "stage val", "train", "plan shards (starting checkpoint)", "plan shards (fine-tuned)",
            "infer (starting checkpoint)", "infer (fine-tuned)", "evaluate (starting checkpoint)",
            "evaluate (fine-tuned)", "publish-finetune"} <= names
    assert tasks["train"]["dependentTasks"] == ["for-loop-1"], "training waits for every staging shard"
    params = spec["root"]["inputDefinitions"]["parameters"]
    required = {k for k, v in params.items() if not v.get("isOptional")}
    assert required == {"raw_train", "raw_val", "staged_train", "staged_val", "experiment_dir", "init_checkpoint"}
    assert params["train_backend"]["defaultValue"] == "pytorchjob"
    assert params["tolerations"]["defaultValue"] == [dict(GPU_TOLERATION)]
    for path, task in tasks.items():
        if task["taskInfo"]["name"] in ("train", "stage train", "stage val", "publish-finetune"):
            assert task["cachingOptions"] == {}, f"{path} must not be cached"


def test_evaluate_shape() -> None:
    """Two branches on ``pred_root`` (the compiler's dsl.If/Else: condition-branches-N with a condition-K DAG
    each): predict with the checkpoint, or evaluate the given predictions; each ends with the regression check,
    and the pipeline's output is the one that ran (dsl.OneOf)."""
    spec, _ = _docs("sav-evaluate")
    tasks = dict(_tasks(spec))

    def leaf(path: str) -> str:
        return path.rsplit("/", 1)[-1]

    infer_dag = next(p.rsplit("/", 1)[0] for p in tasks if leaf(p) == "resolve-checkpoint")
    given_dag = next(p.rsplit("/", 1)[0] for p in tasks if leaf(p) == "evaluate-2")
    assert infer_dag != given_dag
    assert "evaluate" in tasks[f"{infer_dag}/check-regression"]["dependentTasks"]
    assert "evaluate-2" in tasks[f"{given_dag}/check-regression-2"]["dependentTasks"]
    assert not any(p.startswith(given_dag + "/") and leaf(p).startswith(("resolve", "plan", "for-loop", "infer"))
                   for p in tasks)
    for path, task in tasks.items():
        if path.split("/")[-1].startswith(("resolve-checkpoint", "check-regression", "evaluate")):
            assert task["cachingOptions"] == {}, f"{path} reads the newest checkpoint or history"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["max_drop"]["defaultValue"] == 1.0 and params["checkpoint"]["defaultValue"] == ""
    assert params["pred_root"]["defaultValue"] == "" and params["do_not_skip_first_last"]["defaultValue"] is False
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
