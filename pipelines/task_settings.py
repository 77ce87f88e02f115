"""Kubernetes settings of pipeline tasks (kfp-kubernetes and task options), in one place for both pipelines.

A pipeline is built either for a cluster (everything below applies; tests check it in the compiled YAML's
platform spec) or for ``kfp.local`` (``cluster=False``): there the settings are left out, since the local runner
ignores the Kubernetes ones with a warning each, but honours retries (a failing local step would wait minutes
between attempts) and environment variables (a ``TMPDIR`` on a volume that is not there breaks every step).
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask

SCRATCH_MOUNT = "/scratch"
# kfp-kubernetes takes an ephemeral volume's size only at compile time.
SCRATCH_SIZE = "200Gi"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# Clusters without Workload Identity keep a GCP service-account key in this Secret (k8s/overlays/generic); steps
# mount it when it exists and savflow.common.storage uses it through SAVFLOW_GCP_KEY_FILE.
CREDENTIALS_SECRET = "savflow-gcp-key"
CREDENTIALS_DIR = "/var/run/secrets/savflow/gcp"
# The image's unprivileged user (docker/Dockerfile).
RUN_AS = 10001
# (cpu, memory) requests = limits of each kind of step.
LIGHT = ("1", "4Gi")
EVALUATE = ("2", "8Gi")
STAGE = ("8", "16Gi")
INFER = ("8", "48Gi")


@dataclass(frozen=True)
class TaskSettings:
    cluster: bool = True

    def image(self, task: PipelineTask, image, size: tuple[str, str] = LIGHT) -> PipelineTask:
        """What every task gets: the pipeline's ``image`` parameter (rather than the components' default), our
        non-root user, the optional key Secret, and CPU/memory requests equal to limits (the compiler adds the other pod security
        defaults: no privilege escalation, all capabilities dropped, RuntimeDefault seccomp)."""
        if not self.cluster:
            return task
        kubernetes.set_security_context(task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True)
        kubernetes.use_secret_as_volume(task, secret_name=CREDENTIALS_SECRET, mount_path=CREDENTIALS_DIR,
                                        optional=True)
        task.set_env_variable("SAVFLOW_GCP_KEY_FILE", f"{CREDENTIALS_DIR}/key.json")
        cpu, memory = size
        task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
        return task.set_container_image(image)

    def scratch(self, task: PipelineTask, size: str = SCRATCH_SIZE) -> PipelineTask:
        """A generic ephemeral volume for local frames (made and deleted with the pod), used as TMPDIR."""
        if not self.cluster:
            return task
        kubernetes.add_ephemeral_volume(task, volume_name="scratch", mount_path=SCRATCH_MOUNT,
                                        access_modes=["ReadWriteOnce"], size=size)
        return task.set_env_variable("TMPDIR", SCRATCH_MOUNT)

    def retries(self, task: PipelineTask, retries: int = 3) -> PipelineTask:
        """Retries with exponential backoff, for steps that resume where they stopped (stage, infer)."""
        if not self.cluster:
            return task
        return task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0,
                              backoff_max_duration="3600s")

    def gpu(self, task: PipelineTask, accelerator_type, node_selector, tolerations) -> PipelineTask:
        """One GPU of ``accelerator_type`` with the pipeline's node selector and tolerations."""
        if not self.cluster:
            return task
        task.set_accelerator_type(accelerator_type).set_accelerator_limit(1)
        kubernetes.add_node_selector_json(task, node_selector)
        kubernetes.add_toleration_json(task, tolerations)
        return task

    def uncached(self, task: PipelineTask) -> PipelineTask:
        """Steps that read what may have changed since an earlier run with the same inputs (the newest
        checkpoint, the history, a raw split that gained videos) must run every time; they skip finished work
        themselves."""
        return task.set_caching_options(False)

    def name(self, task: PipelineTask, display_name: str) -> PipelineTask:
        return task.set_display_name(display_name) if self.cluster else task
