"""Kubernetes settings of pipeline tasks (kfp-kubernetes and task options), in one place for both pipelines.

A pipeline is built either for a cluster (everything below applies; tests check it in the compiled YAML's
platform spec) or for ``kfp.local`` (``cluster=False``): there the settings are left out, since the local runner
ignores the Kubernetes ones with a warning each, but honours retries (a failing local step would wait minutes
between attempts) and environment variables (a ``TMPDIR`` on a volume that is not there breaks every step).

What the compiled platform config may contain depends on the KFP backend that runs it: the driver parses it
with unknown fields rejected, and ``securityContext`` exists from kfp-kubernetes / KFP 2.16 on
(:data:`savflow.common.platforms.KFP_BACKENDS`; ``tests/integration/test_platform_protos.py`` parses the compiled
pipelines with each supported release's protos).
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask

from savflow.common.deployment import (CREDENTIALS_DIR, CREDENTIALS_FILE, CREDENTIALS_SECRET, GPU_RESOURCE,
                                       KEY_FILE_ENV, RUN_AS_GROUP, RUN_AS_USER, SCRATCH_DIR)

# kfp-kubernetes takes an ephemeral volume's size only at compile time.
SCRATCH_SIZE = "200Gi"
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
        kubernetes.set_security_context(task, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_GROUP,
                                        run_as_non_root=True)
        kubernetes.use_secret_as_volume(task, secret_name=CREDENTIALS_SECRET, mount_path=CREDENTIALS_DIR,
                                        optional=True)
        task.set_env_variable(KEY_FILE_ENV, CREDENTIALS_FILE)
        cpu, memory = size
        task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
        return task.set_container_image(image)

    def scratch(self, task: PipelineTask, size: str = SCRATCH_SIZE) -> PipelineTask:
        """A generic ephemeral volume for local frames (made and deleted with the pod), used as TMPDIR."""
        if not self.cluster:
            return task
        kubernetes.add_ephemeral_volume(task, volume_name="scratch", mount_path=SCRATCH_DIR,
                                        access_modes=["ReadWriteOnce"], size=size)
        return task.set_env_variable("TMPDIR", SCRATCH_DIR)

    def retries(self, task: PipelineTask, retries: int = 3) -> PipelineTask:
        """Retries with exponential backoff, for steps that resume where they stopped (stage, infer)."""
        if not self.cluster:
            return task
        return task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0,
                              backoff_max_duration="3600s")

    def gpu(self, task: PipelineTask, node_selector, tolerations) -> PipelineTask:
        """One GPU: a limit on the device plugin's resource (``nvidia.com/gpu``, the only thing the KFP driver
        reads from the accelerator type: it becomes the limit's resource name), the GPU model chosen through
        the pipeline's ``node_selector`` (e.g. ``cloud.google.com/gke-accelerator``), and its tolerations."""
        if not self.cluster:
            return task
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
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
