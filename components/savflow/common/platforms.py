"""The platform releases savflow supports, and how to tell which release of each is installed.

One table (:data:`SUPPORTED`) is the supported-versions matrix: the README quotes it, ``tests/k8s`` validate
every rendered object against the CRD schema of each listed release (and check that the releases we refuse
are refused for the stated reason), and ``savflow doctor`` and the launcher compare a cluster against it.

A CRD object carries no release number, so the release is read from its schema: each release line added or
removed fields that savflow depends on (read from the CRD schemas of the tagged releases, see
``tests/k8s/schemas/SOURCES.md``):

* PyTorchJob (Training Operator): ``spec.runPolicy.managedBy`` appears in v1.9; the shape savflow renders is
  the same in v1.8 and v1.9.
* TrainJob (Trainer v2): v2.0 has ``spec.podSpecOverrides``, v2.1 ``spec.podTemplateOverrides``, v2.2 and v2.3
  ``spec.runtimePatches`` (v2.3 adds ``terminationGracePeriodSeconds`` to the patchable pod spec). Only
  ``runtimePatches`` can set the pod and container security context, so savflow needs v2.2 or newer.
* CronWorkflow (Argo): v3.5 requires ``spec.schedule`` (one string); v3.6 and v3.7 accept ``schedule`` and
  ``schedules``; v4 requires ``schedules``. ``k8s/argo`` renders ``schedules``; ``k8s/argo/v3.5`` patches it
  back to ``schedule``.
* KFP backend: its API server parses each task's Kubernetes config strictly (unknown fields fail the run at
  creation: backend/src/v2/compiler/argocompiler/container.go, ``protojson.Unmarshal``), and
  ``securityContext``, which savflow sets on every task, exists from kfp-kubernetes / KFP 2.16 on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Platform:
    """One platform component: its supported release lines, and the releases we checked and refuse."""

    name: str
    supported: tuple[str, ...]
    refused: Mapping[str, str]  # release line -> why
    crd: str | None = None  # the CRD that tells its release, if it has one


KUBERNETES = Platform("Kubernetes", ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34"), {})
KFP_BACKEND = Platform("Kubeflow Pipelines backend", ("2.16", "2.17"), {
    "2.15": "its API server rejects the tasks' securityContext (kfp-kubernetes 2.16 field) when the run is created",
    "2.14": "its API server rejects the tasks' securityContext (kfp-kubernetes 2.16 field) when the run is created",
})
TRAINING_OPERATOR = Platform("Kubeflow Training Operator (PyTorchJob)", ("1.8", "1.9"), {},
                             crd="pytorchjobs.kubeflow.org")
TRAINER = Platform("Kubeflow Trainer (TrainJob)", ("2.2", "2.3"), {
    "2.0": "spec.podSpecOverrides cannot set the pods' security context (non-root user, read-only root, "
           "dropped capabilities, seccomp)",
    "2.1": "spec.podTemplateOverrides cannot set the pods' security context (non-root user, read-only root, "
           "dropped capabilities, seccomp)",
}, crd="trainjobs.trainer.kubeflow.org")
ARGO = Platform("Argo Workflows (CronWorkflow)", ("3.5", "3.6", "3.7", "4.1"), {},
                crd="cronworkflows.argoproj.io")
KUEUE = Platform("Kueue (optional, queue_name)", ("0.5+ for PyTorchJob", "0.17+ for TrainJob"), {
    "0.14-0.16": "writes podSpecOverrides / podTemplateOverrides into a TrainJob, which Trainer 2.2+ lacks",
})
SUPPORTED = (KUBERNETES, KFP_BACKEND, TRAINING_OPERATOR, TRAINER, ARGO, KUEUE)


class UnsupportedPlatform(RuntimeError):
    """The installed release of a platform is one savflow cannot run on; the message says why."""


def _properties(schema: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Mapping[str, Any] = schema
    for key in path:
        node = (node.get("properties") or {}).get(key) or {}
        if node.get("type") == "array":
            node = node.get("items") or {}
    return node


def served_schema(crd: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    """The openAPIV3Schema of ``version`` in a CustomResourceDefinition object, when it is served."""
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version and entry.get("served", True):
            return ((entry.get("schema") or {}).get("openAPIV3Schema")) or {}
    return None


def pytorchjob_release(schema: Mapping[str, Any]) -> str:
    run_policy = _properties(schema, "spec", "runPolicy").get("properties") or {}
    return "1.9" if "managedBy" in run_policy else "1.8"


def trainjob_release(schema: Mapping[str, Any]) -> str:
    spec = _properties(schema, "spec").get("properties") or {}
    if "runtimePatches" in spec:
        pod = _properties(schema, "spec", "runtimePatches", "trainingRuntimeSpec", "template", "spec",
                          "replicatedJobs", "template", "spec", "template", "spec")
        return "2.3" if "terminationGracePeriodSeconds" in (pod.get("properties") or {}) else "2.2"
    if "podTemplateOverrides" in spec:
        return "2.1"
    if "podSpecOverrides" in spec:
        return "2.0"
    return "unknown"


def cronworkflow_release(schema: Mapping[str, Any]) -> str:
    spec = _properties(schema, "spec")
    names = spec.get("properties") or {}
    if "schedules" not in names:
        return "3.5"
    if "schedule" in names:
        return "3.6"  # 3.6 and 3.7 render the same for us
    return "4.1"


RELEASE_OF = {"pytorchjobs.kubeflow.org": ("v1", pytorchjob_release),
              "trainjobs.trainer.kubeflow.org": ("v1alpha1", trainjob_release),
              "cronworkflows.argoproj.io": ("v1alpha1", cronworkflow_release)}


def crd_release(crd: Mapping[str, Any]) -> str | None:
    """The release line a CRD object's schema shows, or None when its version is not served."""
    name = (crd.get("metadata") or {}).get("name", "")
    version, release_of = RELEASE_OF[name]
    schema = served_schema(crd, version)
    return None if schema is None else release_of(schema)


def check_trainjob_crd(crd: Mapping[str, Any]) -> str:
    """The Trainer release of a ``trainjobs.trainer.kubeflow.org`` CRD, or :class:`UnsupportedPlatform`."""
    release = crd_release(crd)
    if release is None:
        raise UnsupportedPlatform("the TrainJob CRD does not serve trainer.kubeflow.org/v1alpha1")
    if release in TRAINER.refused:
        raise UnsupportedPlatform(f"Kubeflow Trainer v{release} is installed; savflow needs v2.2 or newer: "
                                  f"{TRAINER.refused[release]}. Upgrade Trainer, or use train_backend=pytorchjob")
    if release not in TRAINER.supported:
        raise UnsupportedPlatform(f"cannot tell the Kubeflow Trainer release from its TrainJob CRD ({release})")
    return release


def matrix_markdown() -> str:
    """The README's supported-versions table."""
    rows = ["| platform | supported | checked and refused |", "| --- | --- | --- |"]
    for p in SUPPORTED:
        refused = "; ".join(f"{k}: {v}" for k, v in p.refused.items()) or "-"
        rows.append(f"| {p.name} | {', '.join(p.supported)} | {refused} |")
    return "\n".join(rows)
