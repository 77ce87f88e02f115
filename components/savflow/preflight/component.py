"""KFP component of the preflight, the pipelines' first step: wiring only."""

from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def preflight(namespace: str, backend: str, nodes: int, gpus_per_node: int, node_selector: dict, queue_name: str,
              experiment_dir: str, staged_val: str, staged_train: str = "", cluster: bool = True) -> str:
    """Check operators, GPU nodes, this run's permissions and the storage roots before anything starts
    (:func:`savflow.preflight.doctor.preflight_step`); fails the run with each problem and its fix. (The roots
    are separate parameters: a list of pipeline parameters compiles to placeholders inside a constant, which
    not every KFP backend resolves.)"""
    from savflow.preflight.doctor import preflight_step

    return preflight_step(namespace=namespace, backend=backend, nodes=nodes, gpus_per_node=gpus_per_node,
                          node_selector=node_selector, queue_name=queue_name,
                          storage_roots=[staged_train, staged_val, experiment_dir],
                          cluster=cluster)
