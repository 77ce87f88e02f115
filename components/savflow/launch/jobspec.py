"""What a distributed training run needs from the cluster, as one value, and the pod parts every backend shares.

:class:`TrainJobSpec` holds the knobs (image, nodes, GPUs per node, resources, placement, identity, the worker's
arguments); :mod:`savflow.launch.pytorchjob` and :mod:`savflow.launch.trainjob` turn it into a Kubeflow object and
the local launcher turns it into a ``torchrun`` command line. Everything here is pure: no I/O, no Kubernetes
client, so the committed manifests and the objects the launcher creates come from the same functions.

Every pod we write follows the same security defaults (non-root with a fixed high UID, no privilege
escalation, all capabilities dropped, seccomp ``RuntimeDefault``, a read-only root filesystem with writable
scratch on volumes, requests = limits) so that the checks in ``tests/k8s`` can hold them to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from savflow.common import deployment
from savflow.train import distenv, worker
from savflow.train.torchrun import WORKER_MODULE
from savflow.common.deployment import (CREDENTIALS_DIR, CREDENTIALS_FILE, CREDENTIALS_KEY, DEFAULT_IMAGE,
                                       GPU_RESOURCE, GPU_TOLERATION, RUN_AS_GROUP, RUN_AS_USER, SCRATCH_DIR)

TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
PART_OF_LABEL = {"app.kubernetes.io/part-of": "savflow", "app.kubernetes.io/component": "train"}


@dataclass(frozen=True)
class TrainJobSpec:
    """One distributed training run: ``nodes`` pods, each running ``torchrun`` over ``gpus_per_node`` processes.

    ``gpus_per_node = 0`` runs one CPU process per node (useful on a CPU-only test cluster). ``cpu``, ``memory``
    and ``ephemeral_storage`` are per pod and used as both requests and limits, so training pods get the
    Guaranteed QoS class and are the last to be evicted. ``shm_size`` bounds the ``/dev/shm`` memory volume that
    data-loader workers share tensors through; it counts against ``memory``. Local frames go to ``/scratch``, a
    generic ephemeral volume of ``scratch_size`` (from ``scratch_storage_class``, or the cluster default), made
    and deleted with each pod. ``credentials_secret`` names a Secret holding a GCP service-account key under
    ``key.json``, for clusters without Workload Identity.
    """

    worker_args: tuple[str, ...] = ()
    worker_module: str = WORKER_MODULE
    image: str = DEFAULT_IMAGE
    nodes: int = 1
    gpus_per_node: int = 8
    cpu: str = "32"
    memory: str = "256Gi"
    ephemeral_storage: str = "20Gi"
    shm_size: str = "64Gi"
    scratch_size: str = "500Gi"
    scratch_storage_class: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = (GPU_TOLERATION,)
    service_account: str = deployment.TRAIN_SERVICE_ACCOUNT
    credentials_secret: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    backoff_limit: int | None = None
    queue_name: str | None = None
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    active_deadline_seconds: int | None = None
    suspend: bool = False

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if (self.backoff_limit is not None and self.backoff_limit < 0) or self.ttl_seconds_after_finished < 0:
            raise ValueError("backoff_limit and ttl_seconds_after_finished must be >= 0")
        tag = self.image.rsplit("/", 1)[-1]
        if "@sha256:" not in self.image and (":" not in tag or tag.endswith(":latest")):
            raise ValueError(f"image {self.image!r} must be pinned by a version tag or a digest, never 'latest'")
        reserved = sorted(k for k in self.env if k.startswith("PET_") or k in distenv.TORCHRUN_ENV)
        if reserved:
            raise ValueError(f"env must not set {reserved}: the training operator and torchrun own them")

    @property
    def restarts_allowed(self) -> int:
        """``runPolicy.backoffLimit``: ``backoff_limit``, else :data:`FAILURES_TOLERATED` failures of the job.

        The Training Operator counts the restarts of *all* the job's running pods against this limit
        (pkg/core/job.go ``PastBackoffLimit`` sums ``RestartCount`` over every pod whose replica restarts
        ``OnFailure``), and one failure of a multi-node run restarts every node (torchrun on each node exits
        when a peer is lost), so the limit grows with the node count.
        """
        return self.backoff_limit if self.backoff_limit is not None else FAILURES_TOLERATED * self.nodes

    @property
    def procs_per_node(self) -> int:
        """Processes ``torchrun`` starts on each node: one per GPU, or one on a CPU-only node."""
        return self.gpus_per_node or 1


# Job-wide failures (a lost node, a crash) a run survives by default; each costs one restart per node.
FAILURES_TOLERATED = 3



def worker_args(**values: Any) -> tuple[str, ...]:
    """The ``savflow train`` options for one run, from their one declaration in :mod:`savflow.train.worker`
    (keyword = option destination, e.g. ``train_frames``; ``overrides`` = the ``--override`` values); unset
    (None) ones are left out."""
    if "overrides" in values:
        values["override"] = list(values.pop("overrides"))
    unknown = sorted(set(values) - set(worker.option_dests()))
    if unknown:
        raise TypeError(f"not options of the training worker: {unknown}")
    return tuple(worker.argv(values))


def worker_command(spec: TrainJobSpec) -> list[str]:
    """The container command: ``torchrun`` over the worker module (``savflow.train.worker`` unless changed).

    Node count, rank, processes per node and the rendezvous address come from the ``PET_*`` variables that both
    the Training Operator (PyTorchJob) and the Trainer v2 torch runtime (TrainJob) set on every pod; torchrun
    reads them as the defaults of its own options, so the command itself is the same everywhere.
    """
    return ["torchrun", "-m", spec.worker_module, *spec.worker_args]


def container_env(spec: TrainJobSpec) -> list[dict[str, Any]]:
    """Environment for the training container: writable homes on /tmp (the root filesystem is read-only),
    threads per process sized to the CPUs, the credentials file when a key Secret is used, then the user's."""
    threads = max(1, _cpu_count(spec.cpu) // spec.procs_per_node)
    env = {
        "HOME": TMP_DIR,
        "XDG_CACHE_HOME": f"{TMP_DIR}/.cache",
        "TORCHINDUCTOR_CACHE_DIR": f"{TMP_DIR}/.cache/torchinductor",
        "MPLCONFIGDIR": f"{TMP_DIR}/.cache/matplotlib",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        deployment.SCRATCH_ENV: SCRATCH_DIR,
    }
    if spec.credentials_secret:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = CREDENTIALS_FILE
    env.update(spec.env)
    return [{"name": k, "value": v} for k, v in env.items()]


def _cpu_count(quantity: str) -> int:
    """Whole CPUs in a Kubernetes CPU quantity ("32", "7500m")."""
    return int(quantity[:-1]) // 1000 if quantity.endswith("m") else int(float(quantity))


def resources(spec: TrainJobSpec) -> dict[str, dict[str, str]]:
    """Requests equal to limits (Guaranteed QoS), GPUs as an extended resource."""
    amounts = {"cpu": spec.cpu, "memory": spec.memory, "ephemeral-storage": spec.ephemeral_storage}
    if spec.gpus_per_node:
        amounts[GPU_RESOURCE] = str(spec.gpus_per_node)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    """Pod-level defaults; ``fsGroup`` makes the scratch volumes writable by the image's user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_GROUP,
        "fsGroup": RUN_AS_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volume_mounts(spec: TrainJobSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": TMP_DIR},
        {"name": "dshm", "mountPath": SHM_DIR},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
    ]
    if spec.credentials_secret:
        mounts.append({"name": "gcp-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
    return mounts


def volumes(spec: TrainJobSpec) -> list[dict[str, Any]]:
    """/tmp and /dev/shm as emptyDirs (shm in memory), /scratch as a per-pod generic ephemeral volume."""
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.scratch_size}}}
    if spec.scratch_storage_class:
        claim["storageClassName"] = spec.scratch_storage_class
    vols: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": spec.ephemeral_storage}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"labels": dict(PART_OF_LABEL)}, "spec": claim}}},
    ]
    if spec.credentials_secret:
        vols.append({"name": "gcp-credentials",
                     "secret": {"secretName": spec.credentials_secret, "defaultMode": 0o440,
                                "items": [{"key": CREDENTIALS_KEY, "path": CREDENTIALS_KEY}]}})
    return vols


def placement(spec: TrainJobSpec) -> dict[str, Any]:
    """Pod-spec fields that choose nodes; empty ones are left out."""
    out: dict[str, Any] = {}
    if spec.node_selector:
        out["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        out["tolerations"] = [dict(t) for t in spec.tolerations]
    return out


def labels(job_name: str) -> dict[str, str]:
    return {**PART_OF_LABEL, "app.kubernetes.io/name": "savflow", "app.kubernetes.io/instance": job_name}


def job_labels(spec: TrainJobSpec, job_name: str) -> dict[str, str]:
    """Labels of the job object itself: ours, and Kueue's queue label when the job is queued.

    With the label, Kueue admits the job as one workload (all pods or none) into that LocalQueue: PyTorchJob
    through its ``kubeflow.org/pytorchjob`` integration (Kueue >= 0.5), TrainJob through
    ``trainer.kubeflow.org/trainjob`` (Kueue >= 0.14; runtimePatches, which savflow writes, from Kueue 0.17).
    """
    out = labels(job_name)
    if spec.queue_name:
        out[deployment.KUEUE_QUEUE_LABEL] = spec.queue_name
    return out


def created_suspended(spec: TrainJobSpec) -> bool:
    """A queued job is created suspended, so that no pod starts before Kueue admits it (Kueue's webhook would
    suspend it too; creating it so leaves no window)."""
    return spec.suspend or bool(spec.queue_name)
