"""Everything under k8s/ and every object the launcher creates: valid, strict, least-privileged, in agreement.

The kustomizations are rendered with ``kubectl kustomize`` (these tests skip, with the reason, where kubectl is
missing; ``.ci/run`` treats that skip as a failure). Each rendered object and each launcher object validates
against its schema with unknown keys rejected; the pod specs follow the security defaults; RBAC grants exactly
what the launcher uses; the committed PyTorchJob template and the overlays' variants are what the launcher's
rendering code produces for the same settings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

import jsonschema
import pytest
import yaml

from k8s_checks import (KUBECTL_MISSING, OVERLAYS, ROOT, as_pod, kubectl, kustomize, pod_specs, validate)
from savflow.common.savformat import split_paths
from savflow.launch import jobspec, pytorchjob, trainjob
from savflow.launch.jobspec import TrainJobSpec

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason=KUBECTL_MISSING)
NAMESPACE = "savflow"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in OVERLAYS.items()}


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


LAUNCHER_SPECS = {
    "default": TrainJobSpec(worker_args=jobspec.worker_args(config="sam2.1_hiera_b+_sav_finetune")),
    "template": pytorchjob.TEMPLATE_SPEC,
    "cpu-single-node": TrainJobSpec(worker_args=("--config", "sam2.1_tiny128_sav_finetune"), nodes=1,
                                    gpus_per_node=0, tolerations=(), cpu="4", memory="8Gi"),
    "everything": TrainJobSpec(
        worker_args=jobspec.worker_args(config="c", train_frames="gs://b/f", epochs=2, overrides=["a.b=1"]),
        image="registry.example.com:5000/savflow@sha256:" + "0" * 64, nodes=4, gpus_per_node=8,
        scratch_storage_class="premium-rwo", node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        credentials_secret="savflow-gcp-key", env={"NCCL_DEBUG": "INFO"}, active_deadline_seconds=86400),
}


def _launcher_objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for label, spec in LAUNCHER_SPECS.items():
        out.append((f"pytorchjob-{label}", pytorchjob.render_pytorchjob(spec, "sav-run-1", NAMESPACE)))
        out.append((f"trainjob-{label}", trainjob.render_trainjob(spec, "sav-run-1", NAMESPACE)))
    return out


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_rendered_object_validates_strictly(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    assert rendered[overlay]
    for obj in rendered[overlay]:
        validate(obj, "3.5" if overlay == "argo-v3.5" and obj["kind"] == "CronWorkflow" else None)
        cluster_scoped = obj["kind"] in ("ClusterRole", "ClusterRoleBinding")
        assert obj["metadata"].get("namespace") == (None if cluster_scoped else NAMESPACE), \
            f"{obj['kind']}/{obj['metadata']['name']}"
        for where, labels, spec in pod_specs(obj):
            validate(as_pod(where, labels, spec, NAMESPACE))


@pytest.mark.parametrize("label,obj", _launcher_objects(), ids=[label for label, _ in _launcher_objects()])
def test_launcher_objects_validate_strictly(label: str, obj: dict[str, Any]) -> None:
    validate(obj)
    for where, labels, spec in pod_specs(obj):
        validate(as_pod(where, labels, spec, NAMESPACE))


def _pytorchjob() -> dict[str, Any]:
    return pytorchjob.render_pytorchjob(pytorchjob.TEMPLATE_SPEC, "sav-run-1", NAMESPACE)


def _cronworkflow() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "k8s/argo/cronworkflow.yaml").read_text())


def _rename_key(obj: dict[str, Any], path: list[Any], old: str, new: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    node = obj
    for part in path:
        node = node[part]
    node[new] = node.pop(old)
    return obj


@pytest.mark.parametrize("make,path,old,new", [
    (_pytorchjob, ["spec", "pytorchReplicaSpecs", "Master"], "replicas", "replica"),
    (_pytorchjob, ["spec", "runPolicy"], "ttlSecondsAfterFinished", "ttlSecondAfterFinished"),
    (_pytorchjob, ["spec", "pytorchReplicaSpecs", "Worker", "template", "spec"], "serviceAccountName",
     "serviceAcountName"),
    (lambda: trainjob.render_trainjob(pytorchjob.TEMPLATE_SPEC, "sav-run-1"), ["spec", "trainer"], "numNodes",
     "numNode"),
    (_cronworkflow, ["spec"], "schedules", "schedule"),
    (lambda: {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
     ["rules", 0], "verbs", "verb"),
], ids=["pytorchjob-replica", "pytorchjob-ttl", "pod-spec-field", "trainjob-numNode", "cron-v3-schedule",
        "role-verb"])
def test_a_typo_in_a_key_fails_validation(make: Any, path: list[Any], old: str, new: str) -> None:
    good = make()
    validate(good)
    with pytest.raises(jsonschema.ValidationError, match=new):
        validate(_rename_key(good, path, old, new))


def test_metadata_typos_fail_too() -> None:
    job = _pytorchjob()
    job["metadata"]["label"] = job["metadata"].pop("labels")
    with pytest.raises(jsonschema.ValidationError, match="label"):
        validate(job)


def test_committed_template_is_what_the_code_renders() -> None:
    committed = (ROOT / "k8s/base/training/pytorchjob.yaml").read_text()
    assert committed == pytorchjob.render_template(), (
        "k8s/base/training/pytorchjob.yaml differs from savflow.launch.pytorchjob.TEMPLATE_SPEC; regenerate it: "
        "python -m savflow.launch.pytorchjob --output k8s/base/training/pytorchjob.yaml")


@needs_kubectl
@pytest.mark.parametrize("overlay,changes", [
    ("gke", {"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
             "scratch_storage_class": "premium-rwo"}),
    ("generic", {"credentials_secret": "savflow-gcp-key"}),
])
def test_overlay_variants_of_the_template_are_what_the_launcher_renders(
        rendered: dict[str, list[dict[str, Any]]], overlay: str, changes: dict[str, Any]) -> None:
    spec = dataclasses.replace(pytorchjob.TEMPLATE_SPEC, **changes)
    expected = pytorchjob.render_pytorchjob(spec, pytorchjob.TEMPLATE_NAME, NAMESPACE)
    assert _one(rendered[overlay], "PyTorchJob", pytorchjob.TEMPLATE_NAME) == expected


@needs_kubectl
def test_overlays_configure_the_launcher_the_same_way(rendered: dict[str, list[dict[str, Any]]]) -> None:
    gke = _one(rendered["gke"], "ConfigMap", "savflow-defaults")["data"]
    generic = _one(rendered["generic"], "ConfigMap", "savflow-defaults")["data"]
    assert json.loads(gke["node_selector"]) == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert generic["credentials_secret"] == "savflow-gcp-key"
    assert _one(rendered["gke"], "ConfigMap", "savflow-cluster")["data"] == {"scratch_storage_class": "premium-rwo"}
    assert _one(rendered["generic"], "ConfigMap", "savflow-cluster")["data"] == {
        "google_application_credentials": f"{jobspec.CREDENTIALS_DIR}/{jobspec.CREDENTIALS_KEY}"}
    for sa in ("savflow-pipeline", "savflow-train"):
        annotations = _one(rendered["gke"], "ServiceAccount", sa)["metadata"]["annotations"]
        assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
        assert "annotations" not in _one(rendered["generic"], "ServiceAccount", sa)["metadata"]


LAUNCHER_RULES = {
    ("kubeflow.org", "pytorchjobs"): {"create", "get", "list", "watch", "delete"},
    ("trainer.kubeflow.org", "trainjobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get", "list", "watch"},
    ("", "events"): {"list"},
    ("", "serviceaccounts"): {"get"},
    ("kueue.x-k8s.io", "localqueues"): {"get"},
}


def _grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_rbac_is_namespaced_and_exactly_what_the_steps_use(rendered: dict[str, list[dict[str, Any]]],
                                                          overlay: str) -> None:
    """Namespaced Roles for what the steps do; one ClusterRole, read-only, for the preflight facts (CRD objects
    by name, node labels and capacity). No Secrets, no wildcards."""
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] == "Secret"]
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    cluster_roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    if overlay.startswith("argo"):
        assert roles == {} and cluster_roles == {}
        return
    assert set(roles) == {"savflow-launcher", "savflow-argo-executor"}
    assert _grants(roles["savflow-launcher"]) == LAUNCHER_RULES
    assert _grants(roles["savflow-argo-executor"]) == {("argoproj.io", "workflowtaskresults"): {"create", "patch"}}
    assert set(cluster_roles) == {"savflow-preflight"}
    preflight = cluster_roles["savflow-preflight"]["rules"]
    assert {v for rule in preflight for v in rule["verbs"]} <= {"get", "list"}
    crd_rule = next(r for r in preflight if r["resources"] == ["customresourcedefinitions"])
    assert set(crd_rule["resourceNames"]) >= {"pytorchjobs.kubeflow.org", "trainjobs.trainer.kubeflow.org"}
    for grant in [*roles.values(), *cluster_roles.values()]:
        assert "*" not in str(grant["rules"])
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["roleRef"]["kind"] == binding["kind"].replace("Binding", "")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "savflow-pipeline",
                                        "namespace": NAMESPACE}]


def _check_pod_security(where: str, spec: dict[str, Any]) -> None:
    pod = spec.get("securityContext", {})
    assert pod.get("runAsNonRoot") is True, where
    assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, where
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{where}: {key}"
    assert not [v for v in spec.get("volumes", []) if "hostPath" in v], f"{where}: hostPath volume"
    mounted = {v["name"] for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, where
        assert ctx["capabilities"] == {"drop": ["ALL"]}, where
        assert ctx["readOnlyRootFilesystem"] is True, where
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] >= 10000, where
        assert not ctx.get("privileged"), where
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where}: {bound}"
        image = container["image"]
        assert "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")), where
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts and mounts["/tmp"] in mounted, f"{where}: no writable /tmp"


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_pod_we_write_has_the_security_defaults(rendered: dict[str, list[dict[str, Any]]],
                                                      overlay: str) -> None:
    specs = [(where, spec) for obj in rendered[overlay] for where, _, spec in pod_specs(obj)]
    assert specs
    for where, spec in specs:
        _check_pod_security(where, spec)


@pytest.mark.parametrize("label,obj", _launcher_objects(), ids=[label for label, _ in _launcher_objects()])
def test_every_launcher_pod_has_the_security_defaults(label: str, obj: dict[str, Any]) -> None:
    for where, _, spec in pod_specs(obj):
        _check_pod_security(where, spec)


def test_images_must_be_pinned() -> None:
    for image in ("savflow/savflow", "savflow/savflow:latest", "localhost:5000/savflow"):
        with pytest.raises(ValueError, match="pinned"):
            TrainJobSpec(image=image)


def test_env_may_not_set_what_torchrun_and_the_operator_own() -> None:
    for name in ("PET_NNODES", "RANK", "MASTER_ADDR"):
        with pytest.raises(ValueError, match=name):
            TrainJobSpec(env={name: "1"})


@needs_kubectl
def test_defaults_agree_across_configmap_template_and_cronworkflow(rendered: dict[str, list[dict[str, Any]]]) -> None:
    defaults = _one(rendered["gke"], "ConfigMap", "savflow-defaults")["data"]
    spec = pytorchjob.TEMPLATE_SPEC
    assert defaults["image"] == spec.image == jobspec.DEFAULT_IMAGE
    assert (defaults["nodes"], defaults["gpus_per_node"]) == (str(spec.nodes), str(spec.gpus_per_node))
    args = dict(zip(spec.worker_args[::2], spec.worker_args[1::2]))
    assert args["--config"] == defaults["train_config"]
    assert args["--checkpoint"] == defaults["init_checkpoint"]
    assert args["--experiment-dir"] == defaults["experiment_dir"]
    # the worker reads the split's frames folder and annotations folder, as the pipeline passes them
    staged = split_paths(defaults["staged_train"])
    assert (args["--train-frames"], args["--train-annotations"]) == (staged.frames, staged.annotations)
    assert args["--batch-size"] == defaults["batch_size"]
    # the schedule is the config's (epochs x phases per epoch); neither place may multiply it
    assert "--epochs" not in args and "epochs" not in defaults
    cron = _one(rendered["argo"], "CronWorkflow", "savflow-evaluate")
    params = {p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]}
    assert all(isinstance(v, str) for v in params.values())
    shared = set(params) & set(defaults) - {"checkpoint"}  # the cron evaluates the experiment's newest checkpoint
    assert shared >= {"model_config", "staged_val", "val_video_list", "experiment_dir", "infer_shards"}
    assert {k: params[k] for k in shared} == {k: defaults[k] for k in shared}
    assert params["checkpoint"] == defaults["experiment_dir"]
    images = {c["image"] for _, _, s in pod_specs(cron) for c in s["containers"]}
    assert images == {defaults["image"]}


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kustomize_images_retags_every_pod(tmp_path: Any, overlay: str) -> None:
    pinned = "europe-docker.pkg.dev/proj/repo/savflow@sha256:" + "ab" * 32
    name, _, digest = pinned.partition("@")
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(OVERLAYS[overlay], tmp_path)],
        "images": [{"name": "ghcr.io/savflow/savflow", "newName": name, "digest": digest}]}))
    images = {c["image"] for obj in kustomize(tmp_path) for _, _, spec in pod_specs(obj) for c in spec["containers"]}
    assert images == {pinned}


@needs_kubectl
@pytest.mark.parametrize("overlay", ["gke", "generic"])
def test_configmap_defaults_are_sav_finetune_parameters(rendered: dict[str, list[dict[str, Any]]],
                                                        overlay: str) -> None:
    """The ConfigMap doubles as a params file for `savflow submit`: every key is a parameter of sav-finetune
    whose value converts to the declared type (cluster-only settings live in savflow-cluster)."""
    from savflow.pipelines.compile import COMPILED_DIR
    from savflow.pipelines.kfp_client import read_package
    from savflow.pipelines.params import resolve_params

    defaults = _one(rendered[overlay], "ConfigMap", "savflow-defaults")["data"]
    declared = read_package(COMPILED_DIR / "sav-finetune.yaml").parameter_types
    assert set(defaults) <= set(declared), f"not sav-finetune parameters: {sorted(set(defaults) - set(declared))}"
    typed = resolve_params(defaults, {}, declared, "savflow-defaults")
    assert typed["sample_rate"] == 4 and typed["raw_train"].startswith("gs://")
    if "node_selector" in typed:
        assert isinstance(typed["node_selector"], dict)
