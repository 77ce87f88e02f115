"""The pipeline's train step: run the worker where the backend says, then report what the run produced.

``backend`` picks where the same worker runs: ``pytorchjob`` (Kubeflow Training Operator v1, the default),
``trainjob`` (Kubeflow Trainer v2) or ``local`` (``torchrun`` on this machine, for ``savflow run-local``).
After a successful run the step reads ``train_metrics.json`` and the ``latest.json`` pointer from the experiment
directory, so what it reports is what the workers published, whoever ran them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from savflow.common import checkpoints, deployment, storage
from savflow.train import data
from savflow.launch import jobs, jobspec, scratch

log = logging.getLogger(__name__)

BACKENDS = ("pytorchjob", "trainjob", "local")


@dataclass(frozen=True)
class TrainStepResult:
    """The published model-only checkpoint of the newest step, and the run's ``train_metrics.json``."""

    checkpoint: str
    step: int
    metrics: dict[str, Any]


def job_name(run_id: str, prefix: str = "savflow-train") -> str:
    """A Kubernetes name that is the same on every retry of one pipeline run (so a retry adopts the job)."""
    suffix = "".join(c for c in run_id.lower() if c.isalnum())[:12] or "manual"
    return f"{prefix}-{suffix}"


def run_train_step(spec: jobspec.TrainJobSpec, *, backend: str, run_id: str, experiment_dir: str,
                   namespace: str | None = None, timeout_s: float = 7 * 24 * 3600, api_client: Any = None,
                   poll_s: float = 10.0) -> TrainStepResult:
    """Run training for ``spec`` on ``backend`` and return what it published under ``experiment_dir``.

    A KFP retry of the step keeps the run id and so the job name: a job of that name still running is adopted,
    and one that failed is deleted and started again (``replace_failed``), so the retry resumes from the last
    published checkpoint instead of re-reading the old job's failure.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "local":
        jobs.run_local(spec, timeout_s=timeout_s, emit=log.info)
    else:
        jobs.launch(spec, job_name(run_id), namespace=namespace or None, kind=jobs.KINDS[backend],
                        api_client=api_client, timeout_s=timeout_s, poll_s=poll_s, replace_failed=True,
                        emit=log.info)
    latest = checkpoints.read_latest_pointer(experiment_dir)
    if latest is None:
        raise RuntimeError(f"training finished but {experiment_dir} has no published checkpoint "
                           f"({checkpoints.CHECKPOINTS_DIR}/{checkpoints.LATEST} is missing)")
    metrics = json.loads(storage.read_text(storage.join(experiment_dir, checkpoints.METRICS)))
    return TrainStepResult(checkpoint=latest.model, step=latest.step, metrics=metrics)


_DEFAULTS = jobspec.TrainJobSpec()


def build_spec(*, image: str, config: str, train_frames: str, train_annotations: str, experiment_dir: str,
               checkpoint: str = "", file_list: str = "", epochs: int = 0, batch_size: int = 0, num_workers: int = -1,
               seed: int = -1, overrides: Sequence[str] = (), nodes: int = _DEFAULTS.nodes,
               gpus_per_node: int = _DEFAULTS.gpus_per_node, cpu: str = _DEFAULTS.cpu, memory: str = _DEFAULTS.memory,
               shm_size: str = _DEFAULTS.shm_size, scratch_size: str = _DEFAULTS.scratch_size,
               node_selector: Mapping[str, str] | None = None, tolerations: Sequence[Mapping[str, Any]] | None = None,
               service_account: str = deployment.TRAIN_SERVICE_ACCOUNT, credentials_secret: str = "",
               queue_name: str = "", env: Mapping[str, str] | None = None) -> jobspec.TrainJobSpec:
    """A :class:`TrainJobSpec` from pipeline parameters, where 0, -1 and "" mean "the config's default"."""
    args = jobspec.worker_args(
        config=config, train_frames=train_frames, train_annotations=train_annotations,
        file_list=file_list or None, checkpoint=checkpoint or None, experiment_dir=experiment_dir,
        batch_size=batch_size or None, epochs=epochs or None, num_workers=None if num_workers < 0 else num_workers,
        seed=None if seed < 0 else seed, resume=checkpoints.RESUME_AUTO, overrides=tuple(overrides))
    spec = jobspec.TrainJobSpec(
        worker_args=args, image=image, nodes=nodes, gpus_per_node=gpus_per_node, cpu=cpu, memory=memory,
        shm_size=shm_size, scratch_size=scratch_size, node_selector=dict(node_selector or {}),
        service_account=service_account, credentials_secret=credentials_secret or None, queue_name=queue_name or None,
        env=dict(env or {}))
    if tolerations is not None:
        spec = replace(spec, tolerations=tuple(tolerations))
    return spec


def sized_scratch(requested: str, *, train_frames: str, train_annotations: str, file_list: str) -> str:
    """The per-node scratch volume for this training set (see :mod:`savflow.launch.scratch`), logged."""
    videos = list(data.describe_source(train_frames, train_annotations, file_list or None).videos)
    nbytes = scratch.staged_bytes(train_frames, videos)
    size = scratch.scratch_size(requested, nbytes)
    log.info("training data: %d videos, %.1f GiB staged; scratch volume per node %s%s", len(videos),
             nbytes / 2**30, size, "" if requested else " (sized from the data)")
    return size


def check_start(spec: jobspec.TrainJobSpec) -> None:
    """Make the workers' resume decision here, before any job is created: a run that may not continue the
    experiment's checkpoints (another config, overrides, data or starting weights) fails now, with the
    differences named, instead of after its GPUs were scheduled."""
    from savflow.train import worker

    args = worker.build_parser().parse_args(list(spec.worker_args))
    log.info("%s", worker.decide_start(args).plan.describe(args.experiment_dir))


@dataclass(frozen=True)
class TrainStepReport:
    """What the KFP component publishes: the checkpoint URI, and its Metrics and HTML artifacts' contents."""

    checkpoint: str
    step: int
    metrics: dict[str, float]
    html: str


def train_step(*, backend: str, run_id: str, namespace: str = "", timeout_s: float = 7 * 24 * 3600,
               api_client: Any = None, poll_s: float = 10.0, **params: Any) -> TrainStepReport:
    """The pipeline's train step from its parameters (those of :func:`build_spec`): size the scratch volume
    from the staged data (cluster backends), run the job, write the training report into the experiment
    directory (:data:`savflow.launch.report.REPORT_HTML`) and return what the step reports."""
    from savflow.launch import report

    if backend != "local":
        params["scratch_size"] = sized_scratch(
            params.get("scratch_size", ""), train_frames=params["train_frames"],
            train_annotations=params["train_annotations"], file_list=params.get("file_list", ""))
    spec = build_spec(**params)
    check_start(spec)
    result = run_train_step(spec, backend=backend, run_id=run_id, experiment_dir=params["experiment_dir"],
                            namespace=namespace or None, timeout_s=timeout_s, api_client=api_client, poll_s=poll_s)
    page = report.training_html(result.metrics, checkpoints.complete_checkpoints(params["experiment_dir"]))
    # the same page next to train_metrics.json, for whoever opens the experiment without the KFP UI
    storage.write_bytes(storage.join(params["experiment_dir"], report.REPORT_HTML), page.encode("utf-8"),
                        content_type="text/html; charset=utf-8")
    return TrainStepReport(checkpoint=result.checkpoint, step=result.step,
                           metrics=report.numeric_metrics(result.metrics), html=page)
