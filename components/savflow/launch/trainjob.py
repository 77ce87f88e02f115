"""Render a Kubeflow Trainer v2 ``TrainJob`` (trainer.kubeflow.org/v1alpha1) running the same training worker.

The Training Operator v1 line (PyTorchJob) is in maintenance; Trainer v2 runs jobs from a ``TrainingRuntime``.
This backend references the stock ``torch-distributed`` ClusterTrainingRuntime: its torch plugin sets
``PET_NNODES``, ``PET_NPROC_PER_NODE`` (from ``numProcPerNode``), ``PET_NODE_RANK`` (the Job completion index),
``PET_MASTER_ADDR`` (``{job}-node-0-0.{job}``) and ``PET_MASTER_PORT`` on the ``node`` container, and rejects
user env that sets them, so the command is the same ``torchrun -m savflow.train.worker ...`` as in the
PyTorchJob. What ``trainer`` cannot express (service account, security contexts, volumes, placement) goes into a
``runtimePatches`` entry for the ``node`` replicated job.

Differences from the PyTorchJob: restarts and the clean-up TTL belong to the runtime (its JobSet
``failurePolicy`` and ``ttlSecondsAfterFinished``), not to the TrainJob, so ``backoff_limit`` and
``ttl_seconds_after_finished`` of the spec do not apply here; ``activeDeadlineSeconds`` and ``suspend`` do.
"""

from __future__ import annotations

from typing import Any

from savflow.launch import jobspec
from savflow.launch.jobspec import TrainJobSpec

API_VERSION = "trainer.kubeflow.org/v1alpha1"
KIND = "TrainJob"
RUNTIME = "torch-distributed"
NODE = "node"  # the replicated job and its container in the torch runtimes
PATCH_MANAGER = "savflow/launcher"


def render_trainjob(spec: TrainJobSpec, name: str, namespace: str | None = None,
                    runtime: str = RUNTIME) -> dict[str, Any]:
    """The TrainJob for ``spec`` named ``name`` on the ClusterTrainingRuntime ``runtime``."""
    metadata: dict[str, Any] = {"name": name, "labels": jobspec.job_labels(spec, name)}
    if namespace:
        metadata["namespace"] = namespace
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.service_account,
        "securityContext": jobspec.pod_security_context(),
        "containers": [{
            "name": NODE,
            "securityContext": jobspec.container_security_context(),
            "volumeMounts": jobspec.volume_mounts(spec),
        }],
        "volumes": jobspec.volumes(spec),
        **jobspec.placement(spec),
    }
    job_spec: dict[str, Any] = {
        "runtimeRef": {"name": runtime, "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
        "suspend": jobspec.created_suspended(spec),
        "trainer": {
            "image": spec.image,
            "command": jobspec.worker_command(spec),
            "env": jobspec.container_env(spec),
            "numNodes": spec.nodes,
            "numProcPerNode": spec.procs_per_node,
            "resourcesPerNode": jobspec.resources(spec),
        },
        "runtimePatches": [{
            "manager": PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
                "name": NODE,
                "template": {"spec": {"template": {
                    "metadata": {"labels": jobspec.labels(name)},
                    "spec": pod_spec,
                }}},
            }]}}},
        }],
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": job_spec}
