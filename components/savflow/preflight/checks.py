"""The preflight's judgements: facts about a cluster in, findings (what is wrong, how to fix it) out.

Pure functions over plain data, so each rule is tested without a cluster; :mod:`savflow.preflight.doctor`
gathers the facts (CRD objects, nodes, access reviews, a bucket probe, the KFP API) and calls these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from savflow.common import deployment, platforms

OK, WARN, ERROR = "ok", "warning", "error"


@dataclass(frozen=True)
class Finding:
    """One check's outcome; ``fix`` says what to do when it is not ok."""

    check: str
    status: str
    message: str
    fix: str = ""

    def line(self) -> str:
        mark = {OK: "ok   ", WARN: "warn ", ERROR: "ERROR"}[self.status]
        return f"{mark} {self.check}: {self.message}" + (f"\n      fix: {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def exit_code(findings: Iterable[Finding]) -> int:
    """0 only when no check failed: the run can work (warnings are things we could not prove either way)."""
    return 1 if any(f.status == ERROR for f in findings) else 0


# --- operators ------------------------------------------------------------------------------------------------

BACKEND_CRDS = {"pytorchjob": "pytorchjobs.kubeflow.org", "trainjob": "trainjobs.trainer.kubeflow.org"}
PLATFORM_OF = {"pytorchjobs.kubeflow.org": platforms.TRAINING_OPERATOR,
               "trainjobs.trainer.kubeflow.org": platforms.TRAINER,
               "cronworkflows.argoproj.io": platforms.ARGO}
INSTALL_HINT = {
    "pytorchjobs.kubeflow.org": "install the Kubeflow Training Operator v1.9 (kubectl apply --server-side -k "
                                "\"github.com/kubeflow/training-operator.git/manifests/overlays/standalone"
                                "?ref=v1.9.4\")",
    "trainjobs.trainer.kubeflow.org": "install Kubeflow Trainer v2.2 or newer with its torch-distributed runtime, "
                                      "or set train_backend=pytorchjob",
    "workflows.argoproj.io": "install Kubeflow Pipelines 2.16 or newer (it brings Argo Workflows)",
}


def check_operator(crd_name: str, crd: Mapping[str, Any] | None, error: str | None = None) -> Finding:
    """The operator behind ``crd_name`` is installed at a supported release (``crd`` None: not found)."""
    check = f"operator {crd_name}"
    if error is not None:
        return Finding(check, WARN, f"cannot read the CRD: {error}",
                       "bind the ClusterRole savflow-preflight (k8s/base/rbac), or run doctor as a cluster admin")
    if crd is None:
        return Finding(check, ERROR, "not installed (no such CRD)", INSTALL_HINT.get(crd_name, ""))
    platform = PLATFORM_OF.get(crd_name)
    if platform is None:
        return Finding(check, OK, "installed")
    if crd_name == "trainjobs.trainer.kubeflow.org":
        try:
            release = platforms.check_trainjob_crd(crd)
        except platforms.UnsupportedPlatform as exc:
            return Finding(check, ERROR, str(exc), INSTALL_HINT[crd_name])
    else:
        release = platforms.crd_release(crd)
    supported = ", ".join(platform.supported)
    if release is None:
        return Finding(check, ERROR, f"{platform.name}: the CRD does not serve the version savflow uses",
                       INSTALL_HINT.get(crd_name, ""))
    return Finding(check, OK, f"{platform.name} {release} (supported: {supported})")


# --- nodes ----------------------------------------------------------------------------------------------------

def _gpus(node: Mapping[str, Any]) -> int:
    value = ((node.get("status") or {}).get("allocatable") or {}).get(deployment.GPU_RESOURCE, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def check_gpu_nodes(nodes: list[Mapping[str, Any]] | None, *, node_selector: Mapping[str, str],
                    gpus_per_node: int, nodes_wanted: int, error: str | None = None) -> Finding:
    """Enough nodes that match ``node_selector`` offer ``gpus_per_node`` of ``nvidia.com/gpu`` each."""
    check = f"GPU nodes ({deployment.GPU_RESOURCE})"
    if error is not None:
        return Finding(check, WARN, f"cannot list nodes: {error}",
                       "bind the ClusterRole savflow-preflight (k8s/base/rbac), or run doctor as a cluster admin")
    nodes = nodes or []
    with_gpus = [n for n in nodes if _gpus(n) > 0]
    if not with_gpus:
        return Finding(check, ERROR, f"none of {len(nodes)} nodes offers {deployment.GPU_RESOURCE}",
                       "add a GPU node pool with the NVIDIA device plugin (on GKE a GPU node pool installs it)")
    selector = dict(node_selector)
    matching = [n for n in with_gpus
                if all(((n.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())]
    where = f" matching {selector}" if selector else ""
    if not matching:
        models = sorted({((n.get("metadata") or {}).get("labels") or {}).get(label, "")
                         for n in with_gpus for label in (deployment.GKE_ACCELERATOR_LABEL,
                                                          deployment.NVIDIA_PRODUCT_LABEL)} - {""})
        return Finding(check, ERROR, f"{len(with_gpus)} GPU nodes, none{where}",
                       f"set node_selector to a label the GPU nodes have (GPU models seen: {', '.join(models) or '?'})")
    big_enough = [n for n in matching if _gpus(n) >= gpus_per_node]
    if gpus_per_node and len(big_enough) < nodes_wanted:
        return Finding(check, ERROR, f"training wants {nodes_wanted} nodes with {gpus_per_node} GPUs each; "
                                     f"{len(big_enough)} of the {len(matching)} GPU nodes{where} have that many",
                       "lower nodes / gpus_per_node, or grow the node pool (a node pool that autoscales from "
                       "zero shows no nodes until a pod asks)")
    counts = sorted({_gpus(n) for n in matching})
    return Finding(check, OK, f"{len(matching)} GPU nodes{where} ({'/'.join(map(str, counts))} GPUs each)")


# --- permissions ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """One thing a service account must be allowed to do in the namespace."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    why: str = ""

    def describe(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {what}{'.' + self.group if self.group else ''}"


def pipeline_needs(backend: str) -> list[Access]:
    """What the pipeline's pods do with the Kubernetes API: Argo's executor records step outputs, and the
    train step runs its job (savflow.launch.jobs)."""
    needs = [Access("create", "argoproj.io", "workflowtaskresults", why="Argo's executor records outputs"),
             Access("patch", "argoproj.io", "workflowtaskresults", why="Argo's executor records outputs")]
    if backend in BACKEND_CRDS:
        plural, group = BACKEND_CRDS[backend].split(".", 1)
        needs += [Access(verb, group, plural, why="the train step runs its job") for verb in
                  ("create", "get", "delete")]
        needs += [Access("list", "", "pods", why="the train step finds the master pod"),
                  Access("get", "", "pods", "log", why="the train step streams its log"),
                  Access("list", "", "events", why="the train step reports the job's events")]
    return needs


def check_access(subject: str, needs: list[Access], allowed: Mapping[Access, bool | None]) -> list[Finding]:
    """One finding per missing permission (``allowed`` None: the review itself was refused)."""
    missing = [a for a in needs if allowed.get(a) is False]
    unknown = [a for a in needs if allowed.get(a) is None]
    out = []
    if missing:
        out.append(Finding(f"permissions of {subject}", ERROR,
                           "not allowed to " + "; ".join(f"{a.describe()} ({a.why})" for a in missing),
                           "apply k8s/overlays/<yours> (Roles savflow-launcher and savflow-argo-executor) in this "
                           "namespace, and run the pipeline with --service-account savflow-pipeline"))
    if unknown:
        out.append(Finding(f"permissions of {subject}", WARN,
                           "could not review " + ", ".join(a.describe() for a in unknown),
                           "run doctor as someone who may create (local/self) subject access reviews"))
    if not missing and not unknown:
        out.append(Finding(f"permissions of {subject}", OK, f"allowed all {len(needs)} operations the run needs"))
    return out


# --- storage and KFP ------------------------------------------------------------------------------------------

def check_bucket(uri: str, error: str | None) -> Finding:
    if error is None:
        return Finding(f"storage {uri}", OK, "a probe object was written, read back and deleted")
    return Finding(f"storage {uri}", ERROR, error,
                   "give the pods' Google service account roles/storage.objectAdmin on the bucket (GKE: Workload "
                   "Identity, k8s/README.md 'Bucket access'; elsewhere the savflow-gcp-key Secret)")


def check_kfp(answer: Mapping[str, Any] | None, error: str | None, namespace: str | None) -> Finding:
    if error is not None:
        return Finding("KFP API", ERROR, f"does not answer: {error}",
                       "give --host (e.g. after kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80) "
                       "and credentials (--token or KF_PIPELINES_TOKEN)")
    multi_user = bool((answer or {}).get("multi_user"))
    if multi_user and not namespace:
        return Finding("KFP API", ERROR, "answers, multi-user install, but no profile namespace given",
                       "give --namespace (your Kubeflow profile namespace)")
    return Finding("KFP API", OK, f"answers ({'multi-user' if multi_user else 'single-user'}); the matrix needs "
                                  f"backend {' or '.join(platforms.KFP_BACKEND.supported)}, which the API does not "
                                  f"report")
