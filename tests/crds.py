"""CRD schemas of each platform release we test against, and CustomResourceDefinition objects built from them.

The schemas are the ``openAPIV3Schema`` of the CRDs of tagged releases (``k8s/schemas/SOURCES.md``), copied
unchanged. :func:`crd_object` wraps one in a CustomResourceDefinition as the API server serves it, so tests can
install "Trainer v2.1" or "Argo 3.5" in the Kubernetes API fake.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent / "k8s" / "schemas"
# (apiVersion, kind) -> release line -> schema file, newest last.
CRD_SCHEMAS = {
    ("kubeflow.org/v1", "PyTorchJob"): {
        "1.8": "kubeflow.org_v1_pytorchjob_v1.8.1.json",
        "1.9": "kubeflow.org_v1_pytorchjob.json",
    },
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): {
        "2.0": "trainer.kubeflow.org_v1alpha1_trainjob_v2.0.0.json",
        "2.1": "trainer.kubeflow.org_v1alpha1_trainjob_v2.1.0.json",
        "2.2": "trainer.kubeflow.org_v1alpha1_trainjob_v2.2.0.json",
        "2.3": "trainer.kubeflow.org_v1alpha1_trainjob.json",
    },
    ("argoproj.io/v1alpha1", "CronWorkflow"): {
        "3.5": "argoproj.io_v1alpha1_cronworkflow_v3.5.15.json",
        "3.6": "argoproj.io_v1alpha1_cronworkflow_v3.6.19.json",
        "3.7": "argoproj.io_v1alpha1_cronworkflow_v3.7.18.json",
        "4.1": "argoproj.io_v1alpha1_cronworkflow.json",
    },
}
PLURALS = {"PyTorchJob": "pytorchjobs", "TrainJob": "trainjobs", "CronWorkflow": "cronworkflows"}


def crd_schema(api_version: str, kind: str, release: str | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of ``kind`` in ``release`` (default: the newest we have)."""
    files = CRD_SCHEMAS[(api_version, kind)]
    return json.loads((SCHEMAS / files[release or list(files)[-1]]).read_text())


def close_schema(schema: Any) -> Any:
    """A copy of ``schema`` where every object schema with ``properties`` and no ``additionalProperties``
    (and no ``x-kubernetes-preserve-unknown-fields``) rejects keys it does not list, as strict field
    validation does."""
    if isinstance(schema, list):
        return [close_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: close_schema(value) if key not in ("enum", "required", "default") else copy.deepcopy(value)
           for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_name(kind: str, api_version: str) -> str:
    return f"{PLURALS[kind]}.{api_version.split('/')[0]}"


def crd_object(kind: str, release: str) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind`` as ``release`` installs it (one served, stored version)."""
    (api_version,) = [a for a, k in CRD_SCHEMAS if k == kind]
    group, version = api_version.split("/")
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name(kind, api_version)},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": PLURALS[kind], "singular": kind.lower(),
                               "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": crd_schema(api_version, kind, release)}}]}}
