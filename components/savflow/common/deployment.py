"""Facts about how savflow's pods run on a cluster, defined once for every place that renders a pod.

The pipeline's task settings (:mod:`savflow.pipelines.task_settings`), the training job renderers
(:mod:`savflow.launch.jobspec`), the storage client (the key file variable), the preflight check and the tests
all import these names; the Dockerfile's user and the kustomize manifests are checked against them by
``tests/k8s``. Nothing here imports anything heavier than the package version.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from savflow import __version__

IMAGE_REPOSITORY = "ghcr.io/savflow/savflow"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"

# The image's unprivileged user (docker/Dockerfile); a UID above 10000 cannot collide with a host account.
RUN_AS_USER = 10001
RUN_AS_GROUP = 10001

# The Kubernetes extended resource that the NVIDIA device plugin advertises. The KFP driver uses a task's
# accelerator type as the *resource name* of its limit (backend/src/v2/driver: res.Limits[ResourceName(type)]),
# so this, never a GPU model, is what set_accelerator_type gets; the model is a node label (node_selector).
GPU_RESOURCE = "nvidia.com/gpu"
# GPU node pools are commonly tainted with the resource name (GKE adds this taint to every GPU node pool).
GPU_TOLERATION: Mapping[str, str] = MappingProxyType(
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
# Well-known node labels that name the GPU model, for the preflight check's hints.
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
NVIDIA_PRODUCT_LABEL = "nvidia.com/gpu.product"  # set by NVIDIA GPU feature discovery

# Local frames and archives go to a per-pod volume here; TMPDIR points at it in pipeline tasks.
SCRATCH_DIR = "/scratch"
SCRATCH_ENV = "SAVFLOW_SCRATCH"

# Clusters without Workload Identity keep a GCP service-account key in this Secret (k8s/overlays/generic); pods
# mount it when it exists and savflow.common.storage uses it through KEY_FILE_ENV (a missing file means
# "use the default credentials").
CREDENTIALS_SECRET = "savflow-gcp-key"
CREDENTIALS_DIR = "/var/run/secrets/savflow/gcp"
CREDENTIALS_KEY = "key.json"
CREDENTIALS_FILE = f"{CREDENTIALS_DIR}/{CREDENTIALS_KEY}"
KEY_FILE_ENV = "SAVFLOW_GCP_KEY_FILE"

# Service accounts of k8s/base/rbac: the pipeline steps (which launch the training job) and the training pods.
PIPELINE_SERVICE_ACCOUNT = "savflow-pipeline"
TRAIN_SERVICE_ACCOUNT = "savflow-train"

# Kueue admits a job whole (all pods or none) when it carries this label naming a LocalQueue.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
