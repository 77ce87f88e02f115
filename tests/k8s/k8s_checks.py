"""Shared by the tests of k8s/, docker/ and the launcher's objects: rendering, schema validation, pod specs.

Validation is strict everywhere: core objects through ``kubernetes-validate``'s strict schemas for Kubernetes
1.32 (``additionalProperties: false`` throughout), custom resources through the CRD schemas in ``schemas/``
after :func:`close_schema` has closed every object that lists its properties, so that a typo such as
``replica:`` fails as it would under kubectl's strict field validation instead of being pruned silently.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import yaml
from crds import CRD_SCHEMAS, close_schema, crd_schema

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32"  # the Kubernetes minor that kubectl here (1.32) speaks; core objects are also checked
# against every supported minor (savflow.common.platforms.KUBERNETES)
# A CRD schema leaves metadata as a bare object (the API server checks it); these are the keys we may write.
METADATA_KEYS = {"name", "namespace", "labels", "annotations"}
KUBECTL_MISSING = "kubectl not found on PATH: cannot render the kustomizations under k8s/ (install kubectl >= 1.27)"
OVERLAYS = {"gke": ROOT / "k8s/overlays/gke", "generic": ROOT / "k8s/overlays/generic", "argo": ROOT / "k8s/argo",
            "argo-v3.5": ROOT / "k8s/argo-v3.5"}


@functools.cache
def crd_validator(api_version: str, kind: str, release: str | None = None) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(close_schema(crd_schema(api_version, kind, release)))


def releases_of(obj: dict[str, Any]) -> list[str]:
    """The release lines we have a schema of for ``obj``'s kind (none for core kinds)."""
    return list(CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")), {}))


def validate(obj: dict[str, Any], release: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` (kubernetes-validate's subclass for core kinds) when ``obj`` is not
    a valid object of its kind, unknown keys included; ``release`` picks the CRD release line, or for core
    kinds the Kubernetes minor (default: the newest CRD schema, Kubernetes 1.32)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        extra = set(obj.get("metadata", {})) - METADATA_KEYS
        if extra:
            raise jsonschema.ValidationError(f"unexpected metadata keys {sorted(extra)}")
        crd_validator(*key, release).validate(obj)
    else:
        kubernetes_validate.validate(obj, release or K8S_VERSION, strict=True)


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize(path: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders from the kustomization at ``path``."""
    exe = kubectl()
    assert exe is not None, KUBECTL_MISSING
    out = subprocess.run([exe, "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """(where, labels, pod spec) for every pod an object makes, as the pod will effectively look.

    TrainJob: the runtime patch's pod spec with the ``trainer`` fields (image, command, env, resources) folded
    into its ``node`` container. CronWorkflow: each container or script template as a pod, with the workflow's
    pod-level settings; a script's ``source`` is the container's program, not a container field.
    """
    kind, name = obj["kind"], obj["metadata"]["name"]
    if kind == "Pod":
        yield f"Pod/{name}", obj["metadata"].get("labels", {}), obj["spec"]
    elif kind == "PyTorchJob":
        for role, replica in obj["spec"]["pytorchReplicaSpecs"].items():
            template = replica["template"]
            yield f"PyTorchJob/{name}/{role}", template["metadata"].get("labels", {}), template["spec"]
    elif kind == "TrainJob":
        trainer = obj["spec"]["trainer"]
        for patch in obj["spec"]["runtimePatches"]:
            for job in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
                template = job["template"]["spec"]["template"]
                spec = copy.deepcopy(template["spec"])
                for container in spec["containers"]:
                    container.update(image=trainer["image"], command=trainer["command"], env=trainer["env"],
                                     resources=trainer["resourcesPerNode"])
                yield f"TrainJob/{name}/{job['name']}", template["metadata"].get("labels", {}), spec
    elif kind == "CronWorkflow":
        workflow = obj["spec"]["workflowSpec"]
        for template in workflow["templates"]:
            container = template.get("container") or template.get("script")
            if container is None:
                continue
            container = {k: v for k, v in container.items() if k != "source"}
            spec = {"containers": [{"name": "main", **container}]}
            for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext", "volumes",
                        "tolerations", "nodeSelector"):
                if key in template or key in workflow:
                    spec[key] = template.get(key, workflow.get(key))
            labels = workflow.get("podMetadata", {}).get("labels", {})
            yield f"CronWorkflow/{name}/{template['name']}", labels, spec


def as_pod(where: str, labels: dict[str, str], spec: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A plain Pod with ``spec``: what a scanner that knows only core kinds can check."""
    name = where.lower().replace("/", "-").replace("_", "-")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}, "spec": spec}
