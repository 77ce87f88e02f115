"""``savflow doctor``: gather the facts about a cluster that a run depends on, and judge them.

Facts come from the API server (CRD objects, nodes, access reviews), from a probe object in each storage root,
and from the KFP API; :mod:`savflow.preflight.checks` turns them into findings. Every request is read-only
except the probe object (written, read back, deleted) and the access reviews (which the API server evaluates
without storing). Unreadable facts are warnings that say which permission was missing, never a crash.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from savflow.common import deployment, storage
from savflow.common.kube import read_crd
from savflow.preflight import checks
from savflow.preflight.checks import Access, Finding

PROBE_DIR = "_savflow_doctor"
KUEUE_CRD = "localqueues.kueue.x-k8s.io"


@dataclass(frozen=True)
class RunPlan:
    """What the run about to start will ask of the cluster."""

    namespace: str
    backend: str = "pytorchjob"
    nodes: int = 1
    gpus_per_node: int = 8
    node_selector: dict[str, str] = field(default_factory=dict)
    queue_name: str = ""
    storage_roots: tuple[str, ...] = ()
    pipeline_service_account: str = deployment.PIPELINE_SERVICE_ACCOUNT
    train_service_account: str = deployment.TRAIN_SERVICE_ACCOUNT
    as_self: bool = False  # review our own permissions (in a pipeline pod) instead of the pipeline account's


def _reason(exc: Any) -> str:
    status = getattr(exc, "status", None)
    return {403: "forbidden", 401: "unauthorized"}.get(status, f"{type(exc).__name__}: {exc}")


def _read_crd(api_client: Any, name: str) -> tuple[dict | None, str | None]:
    """(the CRD object or None when not installed, the reason it could not be read)."""
    from kubernetes.client import ApiException

    try:
        return read_crd(api_client, name), None
    except ApiException as exc:
        return None, _reason(exc)


def operator_findings(api_client: Any, plan: RunPlan) -> list[Finding]:
    names = ["workflows.argoproj.io"]
    if plan.backend in checks.BACKEND_CRDS:
        names.append(checks.BACKEND_CRDS[plan.backend])
    out = [checks.check_operator(name, *_read_crd(api_client, name)) for name in names]
    if plan.queue_name:
        crd, error = _read_crd(api_client, KUEUE_CRD)
        out.append(checks.check_operator(KUEUE_CRD, crd, error) if crd is None or error else
                   _local_queue(api_client, plan))
    return out


def _local_queue(api_client: Any, plan: RunPlan) -> Finding:
    from kubernetes import client
    from kubernetes.client import ApiException

    check = f"Kueue LocalQueue {plan.namespace}/{plan.queue_name}"
    try:
        client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta1", plan.namespace, "localqueues", plan.queue_name)
    except ApiException as exc:
        if exc.status == 404:
            return Finding(check, checks.ERROR, "does not exist",
                           "create the LocalQueue (pointing at a ClusterQueue with GPU quota), or leave queue_name "
                           "empty")
        return Finding(check, checks.WARN, f"cannot read it: {_reason(exc)}")
    return Finding(check, checks.OK, "exists; the training job will be admitted whole or not at all")


def node_findings(api_client: Any, plan: RunPlan) -> list[Finding]:
    from kubernetes import client
    from kubernetes.client import ApiException

    if plan.gpus_per_node == 0 and plan.backend == "local":
        return []
    try:
        nodes = client.CoreV1Api(api_client).list_node(_preload_content=False)
    except ApiException as exc:
        return [checks.check_gpu_nodes(None, node_selector=plan.node_selector, gpus_per_node=plan.gpus_per_node,
                                       nodes_wanted=plan.nodes, error=_reason(exc))]
    import json

    items = json.loads(nodes.data).get("items", [])
    return [checks.check_gpu_nodes(items, node_selector=plan.node_selector, gpus_per_node=plan.gpus_per_node,
                                   nodes_wanted=plan.nodes)]


def _review(api_client: Any, plan: RunPlan, access: Access) -> bool | None:
    """Whether the pipeline's service account (or this identity) may do ``access`` in the namespace."""
    from kubernetes import client
    from kubernetes.client import ApiException

    attrs = {"namespace": plan.namespace, "verb": access.verb, "group": access.group,
             "resource": access.resource}
    if access.subresource:
        attrs["subresource"] = access.subresource
    auth = client.AuthorizationV1Api(api_client)
    try:
        if plan.as_self:
            review = auth.create_self_subject_access_review(
                {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                 "spec": {"resourceAttributes": attrs}})
        else:
            user = f"system:serviceaccount:{plan.namespace}:{plan.pipeline_service_account}"
            review = auth.create_namespaced_local_subject_access_review(plan.namespace, {
                "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
                "metadata": {"namespace": plan.namespace},
                "spec": {"user": user, "groups": ["system:serviceaccounts",
                                                  f"system:serviceaccounts:{plan.namespace}"],
                         "resourceAttributes": attrs}})
    except ApiException:
        return None
    return bool(review.status and review.status.allowed)


def access_findings(api_client: Any, plan: RunPlan) -> list[Finding]:
    needs = checks.pipeline_needs(plan.backend)
    subject = "this pod's service account" if plan.as_self else \
        f"{plan.namespace}/{plan.pipeline_service_account}"
    out = checks.check_access(subject, needs, {a: _review(api_client, plan, a) for a in needs})
    out.append(_train_account(api_client, plan))
    return out


def _train_account(api_client: Any, plan: RunPlan) -> Finding:
    from kubernetes import client
    from kubernetes.client import ApiException

    check = f"service account {plan.namespace}/{plan.train_service_account}"
    try:
        account = client.CoreV1Api(api_client).read_namespaced_service_account(plan.train_service_account,
                                                                                plan.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return Finding(check, checks.ERROR, "does not exist (the training pods run as it)",
                           "apply k8s/overlays/<yours> in this namespace")
        return Finding(check, checks.WARN, f"cannot read it: {_reason(exc)}")
    identity = (account.metadata.annotations or {}).get("iam.gke.io/gcp-service-account")
    how = f"Workload Identity as {identity}" if identity else "no Workload Identity annotation (key Secret?)"
    return Finding(check, checks.OK, f"exists; needs no Kubernetes API access (no token mounted); bucket: {how}")


def probe_storage(root: str) -> str | None:
    """Write, read back and delete a probe object under ``root``; the error text, or None when all worked."""
    uri = storage.join(root, PROBE_DIR, f"{uuid.uuid4().hex}.txt")
    payload = f"savflow doctor {uuid.uuid4().hex}"
    try:
        storage.write_text(uri, payload)
        if storage.read_text(uri) != payload:
            return f"{uri}: read back something else than was written"
        storage.delete(uri)  # a retried delete whose first attempt landed meets 404: that is a success too
        if storage.exists(uri):
            return f"{uri}: still there after it was deleted"
    except storage.StorageError as exc:
        return str(exc)
    except OSError as exc:
        return f"{uri}: {exc}"
    return None


def storage_findings(plan: RunPlan) -> list[Finding]:
    return [checks.check_bucket(root, probe_storage(root)) for root in dict.fromkeys(plan.storage_roots)]


def kfp_finding(connect: Callable[[], Any], namespace: str | None) -> Finding:
    try:
        conn = connect()
        health = conn.client.get_kfp_healthz()
    except Exception as exc:  # any way of not answering (refused, TLS, auth, 404) is the finding
        return checks.check_kfp(None, f"{type(exc).__name__}: {exc}", namespace)
    return checks.check_kfp({"multi_user": health.multi_user}, None, namespace)


def run_checks(plan: RunPlan, *, api_client: Any = None, kfp_connect: Callable[[], Any] | None = None,
               cluster: bool = True, kube_context: str | None = None) -> list[Finding]:
    """Every check that applies: the cluster's (when ``cluster``), the storage roots', the KFP API's (when a
    connection is given). ``api_client`` defaults to the in-cluster or kubeconfig client."""
    findings: list[Finding] = []
    if cluster:
        if api_client is None:
            from savflow.common.kube import load_api_client

            api_client = load_api_client(kube_context)
        findings += operator_findings(api_client, plan)
        findings += node_findings(api_client, plan)
        findings += access_findings(api_client, plan)
    findings += storage_findings(plan)
    if kfp_connect is not None:
        findings.append(kfp_finding(kfp_connect, plan.namespace))
    return findings


def report(findings: Sequence[Finding]) -> str:
    errors = sum(f.status == checks.ERROR for f in findings)
    warnings = sum(f.status == checks.WARN for f in findings)
    verdict = "the run can work" if not errors else f"{errors} problem(s) to fix before the run"
    return "\n".join([*(f.line() for f in findings), f"{len(findings)} checks: {verdict}"
                      + (f" ({warnings} could not be checked)" if warnings else "")])


def preflight_step(*, namespace: str, backend: str, nodes: int, gpus_per_node: int, node_selector: dict,
                   queue_name: str, storage_roots: Sequence[str], cluster: bool) -> str:
    """The pipelines' first step: the checks of ``savflow doctor`` from inside the run, as the run's own
    service account (self reviews), before any pod asks for a GPU. Raises (failing the run) when one failed;
    returns the report. Without ``cluster`` (kfp.local) only the storage roots are probed."""
    from savflow.common.kube import current_namespace

    plan = RunPlan(namespace=namespace or current_namespace(), backend=backend, nodes=nodes,
                   gpus_per_node=gpus_per_node, node_selector=dict(node_selector), queue_name=queue_name,
                   storage_roots=tuple(r for r in storage_roots if r), as_self=True)
    findings = run_checks(plan, cluster=cluster and backend != "local")
    text = report(findings)
    print(text)
    if checks.exit_code(findings):
        raise RuntimeError("preflight failed: " + "; ".join(f.line() for f in findings if f.status == checks.ERROR))
    return text
