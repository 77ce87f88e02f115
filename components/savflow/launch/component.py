"""KFP component of the train step: only wiring; :func:`savflow.launch.train_step.train_step` does the work."""

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(image: str, config: str, train_frames: str, train_annotations: str, experiment_dir: str, run_id: str,
          train_metrics: Output[Metrics], loss_curve: Output[HTML], node_selector: dict, tolerations: list,
          checkpoint: str = "", file_list: str = "", epochs: int = 0, batch_size: int = 0, num_workers: int = -1,
          seed: int = -1, overrides: list = [], backend: str = "pytorchjob", nodes: int = 1, gpus_per_node: int = 8,
          cpu: str = "32", memory: str = "256Gi", shm_size: str = "64Gi", scratch_size: str = "",
          service_account: str = "savflow-train", credentials_secret: str = "", queue_name: str = "",
          namespace: str = "", timeout_s: int = 604800) -> str:
    """Fine-tune, resuming from the experiment's newest checkpoint; returns the model-only checkpoint URI.

    A retry of the step (same pipeline run) adopts the running job, or replaces a failed one, instead of
    starting a second one. ``scratch_size`` "" sizes each node's data volume from the staged data. (KFP
    embeds this function's source, so its defaults are literals; a test holds them to TrainJobSpec's.)
    """
    import logging

    from savflow.launch.train_step import train_step

    logging.basicConfig(level=logging.INFO)
    result = train_step(
        backend=backend, run_id=run_id, namespace=namespace, timeout_s=timeout_s, image=image, config=config,
        train_frames=train_frames, train_annotations=train_annotations, experiment_dir=experiment_dir,
        checkpoint=checkpoint, file_list=file_list, epochs=epochs, batch_size=batch_size, num_workers=num_workers,
        seed=seed, overrides=overrides, nodes=nodes, gpus_per_node=gpus_per_node, cpu=cpu, memory=memory,
        shm_size=shm_size, scratch_size=scratch_size, node_selector=node_selector, tolerations=tolerations,
        service_account=service_account, credentials_secret=credentials_secret, queue_name=queue_name)
    for key, value in result.metrics.items():
        train_metrics.log_metric(key, value)
    with open(loss_curve.path, "w") as fh:
        fh.write(result.html)
    print(f"checkpoint: {result.checkpoint} (step {result.step})")
    return result.checkpoint
