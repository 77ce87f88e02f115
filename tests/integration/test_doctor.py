"""``savflow doctor`` against the Kubernetes API fake with the CRDs of several releases served, the GCS
emulator, and the KFP REST fake; each finding checked for what it names and how to fix it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest
from kfp_fake_server import KfpFakeServer
from kube_fake import FakeCluster
from kubernetes import client

from savflow.pipelines import kfp_client
from savflow.preflight import checks, doctor
from savflow.preflight.checks import ERROR, OK, WARN

NS = "team-a"
H100 = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}


def _node(name: str, gpus: int, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "96", "memory": "1000Gi", "nvidia.com/gpu": str(gpus)}}}


def _allow(fake: FakeCluster, denied: set[tuple[str, str]] = frozenset()) -> list[dict]:
    """Answer LocalSubjectAccessReviews as an authorizer would: allowed unless (verb, resource) is denied."""
    seen: list[dict] = []

    def review(request) -> dict:  # noqa: ANN001 - a kmock request
        seen.append(request.data)
        attrs = request.data["spec"]["resourceAttributes"]
        what = attrs["resource"] + ("/" + attrs["subresource"] if attrs.get("subresource") else "")
        return {**request.data, "status": {"allowed": (attrs["verb"], what) not in denied}}

    fake.api["post", f"/apis/authorization.k8s.io/v1/namespaces/{NS}/localsubjectaccessreviews"] << review
    return seen


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster() as fake:
        core = client.CoreV1Api(fake.client())
        core.create_node(_node("gpu-1", 8, H100))
        core.create_node(_node("gpu-2", 8, H100))
        core.create_node(_node("cpu-1", 0, {}))
        core.create_namespaced_service_account(NS, {"metadata": {"name": "savflow-train", "annotations": {
            "iam.gke.io/gcp-service-account": "savflow@p.iam.gserviceaccount.com"}}})
        fake.api.resources["argoproj.io/v1alpha1/workflows"] = {}
        client.ApiextensionsV1Api(fake.client()).create_custom_resource_definition({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "workflows.argoproj.io"},
            "spec": {"group": "argoproj.io", "scope": "Namespaced",
                     "names": {"kind": "Workflow", "plural": "workflows"},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
        yield fake


def _by_check(findings: list[checks.Finding]) -> dict[str, checks.Finding]:
    return {f.check: f for f in findings}


def _plan(store: str, **kw) -> doctor.RunPlan:
    return doctor.RunPlan(namespace=NS, nodes=2, gpus_per_node=8, node_selector=H100, storage_roots=(store,), **kw)


def test_a_ready_cluster_passes(cluster: FakeCluster, tmp_path: Path, gcs_bucket: str) -> None:
    cluster.install("PyTorchJob", "1.9")
    reviews = _allow(cluster)
    findings = doctor.run_checks(_plan(gcs_bucket + "/exp"), api_client=cluster.client())
    assert checks.exit_code(findings) == 0, doctor.report(findings)
    found = _by_check(findings)
    assert "Training Operator (PyTorchJob) 1.9" in found["operator pytorchjobs.kubeflow.org"].message
    assert found["GPU nodes (nvidia.com/gpu)"].message.startswith("2 GPU nodes matching")
    assert found[f"permissions of {NS}/savflow-pipeline"].status == OK
    assert found[f"storage {gcs_bucket}/exp"].status == OK
    assert {r["spec"]["user"] for r in reviews} == {f"system:serviceaccount:{NS}:savflow-pipeline"}
    assert {(r["spec"]["resourceAttributes"]["verb"], r["spec"]["resourceAttributes"]["resource"])
            for r in reviews} >= {("create", "pytorchjobs"), ("create", "workflowtaskresults"), ("get", "pods")}
    from savflow.common import storage
    assert storage.list_prefix(f"{gcs_bucket}/exp/{doctor.PROBE_DIR}") == [], "the probe object is deleted"


@pytest.mark.parametrize("release,status", [("2.1", ERROR), ("2.2", OK), ("2.3", OK)])
def test_trainjob_backend_needs_trainer_2_2(cluster: FakeCluster, tmp_path: Path, release: str, status: str) -> None:
    cluster.install("TrainJob", release)
    _allow(cluster)
    found = _by_check(doctor.run_checks(_plan(str(tmp_path), backend="trainjob"), api_client=cluster.client()))
    finding = found["operator trainjobs.trainer.kubeflow.org"]
    assert finding.status == status, finding
    if status == ERROR:
        assert "v2.1 is installed; savflow needs v2.2" in finding.message and "pytorchjob" in finding.fix


def test_each_problem_is_named_with_its_fix(cluster: FakeCluster, tmp_path: Path, gcs_emulator: str) -> None:
    _allow(cluster, denied={("create", "pytorchjobs"), ("get", "pods/log")})
    client.CoreV1Api(cluster.client()).delete_namespaced_service_account("savflow-train", NS)
    plan = doctor.RunPlan(namespace=NS, nodes=3, gpus_per_node=8, node_selector={"cloud.google.com/gke-accelerator":
                                                                                "nvidia-a100-80gb"},
                          storage_roots=("gs://no-such-bucket-here/exp",))
    findings = doctor.run_checks(plan, api_client=cluster.client())
    assert checks.exit_code(findings) == 1
    found = _by_check(findings)
    operator = found["operator pytorchjobs.kubeflow.org"]
    assert operator.status == ERROR and "not installed" in operator.message and "Training Operator" in operator.fix
    nodes = found["GPU nodes (nvidia.com/gpu)"]
    assert nodes.status == ERROR and "none matching" in nodes.message and "nvidia-h100-80gb" in nodes.fix
    access = found[f"permissions of {NS}/savflow-pipeline"]
    assert access.status == ERROR and "create pytorchjobs.kubeflow.org" in access.message
    assert "get pods/log" in access.message and "savflow-launcher" in access.fix
    assert found[f"service account {NS}/savflow-train"].status == ERROR
    bucket = found["storage gs://no-such-bucket-here/exp"]
    assert bucket.status == ERROR and "no-such-bucket-here" in bucket.message


def test_too_few_big_nodes_and_a_missing_queue(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.install("PyTorchJob", "1.8")
    _allow(cluster)
    plan = doctor.RunPlan(namespace=NS, nodes=4, gpus_per_node=8, node_selector=H100,
                          storage_roots=(str(tmp_path),), queue_name="gpu-queue")
    findings = doctor.run_checks(plan, api_client=cluster.client())
    found = _by_check(findings)
    assert "wants 4 nodes with 8 GPUs each; 2 of the 2" in found["GPU nodes (nvidia.com/gpu)"].message
    assert found["operator localqueues.kueue.x-k8s.io"].status == ERROR
    assert "Training Operator (PyTorchJob) 1.8" in found["operator pytorchjobs.kubeflow.org"].message


def test_unreadable_facts_are_warnings_not_crashes(tmp_path: Path) -> None:
    with FakeCluster() as fake:
        deny = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
        crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/pytorchjobs.kubeflow.org"
        fake.api["get", crd] << 403 << deny
        fake.api["get", "/api/v1/nodes"] << 403 << deny
        fake.api["post", f"/apis/authorization.k8s.io/v1/namespaces/{NS}/localsubjectaccessreviews"] << 403 << deny
        found = _by_check(doctor.run_checks(_plan(str(tmp_path)), api_client=fake.client()))
    assert found["operator pytorchjobs.kubeflow.org"].status == WARN
    assert "savflow-preflight" in found["GPU nodes (nvidia.com/gpu)"].fix
    assert found[f"permissions of {NS}/savflow-pipeline"].status == WARN


def test_kfp_api_check(tmp_path: Path) -> None:
    with KfpFakeServer() as server:
        server.multi_user = True
        finding = doctor.kfp_finding(lambda: kfp_client.connect(host=server.url), None)
        assert finding.status == ERROR and "--namespace" in finding.fix
        assert doctor.kfp_finding(lambda: kfp_client.connect(host=server.url, namespace=NS), NS).status == OK
    finding = doctor.kfp_finding(lambda: kfp_client.connect(host="http://127.0.0.1:9"), NS)
    assert finding.status == ERROR and "port-forward" in finding.fix


def test_cli_reads_the_run_from_a_params_file(tmp_path: Path, capsys, monkeypatch) -> None:
    """`savflow doctor --params-file` with the ConfigMap's data: the plan comes from the parameters."""
    from savflow.pipelines import doctor_cli as cli

    params = tmp_path / "params.json"
    params.write_text(json.dumps({"train_backend": "trainjob", "nodes": "2", "gpus_per_node": "4",
                                  "node_selector": json.dumps(H100), "experiment_dir": str(tmp_path / "exp"),
                                  "staged_val": str(tmp_path / "val")}))
    import argparse

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--params-file", str(params), "--namespace", NS, "--no-kfp"])
    plan = cli.plan_from_args(args, NS)
    assert (plan.backend, plan.nodes, plan.gpus_per_node, plan.node_selector) == ("trainjob", 2, 4, H100)
    assert plan.storage_roots == (str(tmp_path / "val"), str(tmp_path / "exp"))


def test_the_kueue_queue_must_exist(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.install("PyTorchJob", "1.9")
    _allow(cluster)
    client.ApiextensionsV1Api(cluster.client()).create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "localqueues.kueue.x-k8s.io"},
        "spec": {"group": "kueue.x-k8s.io", "scope": "Namespaced", "names": {"kind": "LocalQueue", "plural": "localqueues"},
                 "versions": [{"name": "v1beta1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    plan = doctor.RunPlan(namespace=NS, nodes=2, gpus_per_node=8, node_selector=H100, storage_roots=(str(tmp_path),),
                          queue_name="gpu-queue")
    missing = _by_check(doctor.run_checks(plan, api_client=cluster.client()))[f"Kueue LocalQueue {NS}/gpu-queue"]
    assert missing.status == ERROR and "create the LocalQueue" in missing.fix
    client.CustomObjectsApi(cluster.client()).create_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta1", NS, "localqueues",
        {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue", "metadata": {"name": "gpu-queue"},
         "spec": {"clusterQueue": "gpus"}})
    found = _by_check(doctor.run_checks(plan, api_client=cluster.client()))[f"Kueue LocalQueue {NS}/gpu-queue"]
    assert found.status == OK and "admitted whole" in found.message


def test_no_cluster_and_no_kubeconfig_is_a_one_line_error(tmp_path: Path, monkeypatch) -> None:
    """Outside a cluster with no kubeconfig (kubernetes/config/incluster_config.py and kube_config.py both
    raise ConfigException): exit status 2 and what was tried, no traceback."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(tmp_path / "none"), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "savflow.pipelines.cli", "doctor", "--no-kfp", "--namespace", NS],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("savflow doctor: error: no Kubernetes API to talk to: not inside a cluster")
    assert "Traceback" not in proc.stderr
