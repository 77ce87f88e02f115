"""``savflow launch-train``: run the training worker as a PyTorchJob (default), a TrainJob, or locally.

The worker options (``--config``, ``--train-frames``, ...) are those of ``savflow train`` and are passed to every
process unchanged; the others describe the job (``--nodes``, ``--gpus-per-node``, resources, placement).
``--print-manifest`` prints the object that would be created and touches no cluster.
"""

# Only the standard library at the top: register() imports what the options need, handle() the launcher (the
# Kubernetes client, YAML), so the other `savflow` commands never load them (see savflow.pipelines.cli).

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from savflow.launch.jobspec import TrainJobSpec

log = logging.getLogger(__name__)

COMMANDS = {"launch-train": "run training as a PyTorchJob/TrainJob on the cluster, or with torchrun here"}
EXAMPLES = {
    "launch-train": ["savflow launch-train --name ft-1 --namespace team-a --nodes 2 --gpus-per-node 8 "
                     "--config sam2.1_hiera_b+_sav_finetune "
                     "--train-frames gs://my-bucket/sav/staged/train/JPEGImages_24fps "
                     "--train-annotations gs://my-bucket/sav/staged/train/annotations "
                     "--experiment-dir gs://my-bucket/exp/ft-1 --print-manifest"],
}


def parse_toleration(text: str) -> dict[str, str]:
    """``KEY[=VALUE][:EFFECT]`` as in ``kubectl taint``: without a value the toleration matches any (Exists)."""
    pair, _, effect = text.partition(":")
    key, sep, value = pair.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"expected KEY[=VALUE][:EFFECT], got {text!r}")
    tol = {"key": key, "operator": "Equal", "value": value} if sep else {"key": key, "operator": "Exists"}
    if effect:
        tol["effect"] = effect
    return tol


def register(subparsers: Any) -> None:
    from savflow.common.cli_types import key_value
    from savflow.launch import jobspec, train_step
    from savflow.train import worker

    defaults = jobspec.TrainJobSpec()
    p = subparsers.add_parser(
        "launch-train", help=COMMANDS["launch-train"],
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    job = p.add_argument_group("job")
    job.add_argument("--name", required=True, help="job name; a retry with the same name adopts the running job")
    job.add_argument("--namespace", help="default: this pod's namespace, else the kubeconfig context's")
    job.add_argument("--backend", choices=train_step.BACKENDS, default="pytorchjob")
    job.add_argument("--image", default=defaults.image)
    job.add_argument("--nodes", type=int, default=defaults.nodes)
    job.add_argument("--gpus-per-node", type=int, default=defaults.gpus_per_node,
                     help="one process per GPU; 0 = one CPU process per node")
    job.add_argument("--cpu", default=defaults.cpu, help="per pod, request = limit")
    job.add_argument("--memory", default=defaults.memory, help="per pod, request = limit")
    job.add_argument("--shm-size", default=defaults.shm_size, help="/dev/shm memory volume")
    job.add_argument("--scratch-size", default=defaults.scratch_size, help="/scratch volume for local frames")
    job.add_argument("--scratch-storage-class", help="storage class of /scratch (default: the cluster's)")
    job.add_argument("--node-selector", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    job.add_argument("--toleration", type=parse_toleration, action="append", metavar="KEY[=VALUE][:EFFECT]",
                     help="replaces the default toleration of the nvidia.com/gpu taint")
    job.add_argument("--service-account", default=defaults.service_account)
    job.add_argument("--credentials-secret", help="Secret with a GCP key in key.json (no Workload Identity)")
    job.add_argument("--env", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    job.add_argument("--backoff-limit", type=int,
                     help="container restarts over all pods before the job fails (default: "
                          f"{jobspec.FAILURES_TOLERATED} per node; one failure restarts every node)")
    job.add_argument("--queue-name", help="Kueue LocalQueue: the job is admitted whole (all nodes) or not at all")
    job.add_argument("--ttl", type=int, default=defaults.ttl_seconds_after_finished,
                     help="seconds a finished job is kept")
    job.add_argument("--active-deadline", type=int, help="seconds the job may run in all")
    job.add_argument("--timeout", type=float, default=7 * 24 * 3600.0, help="seconds to wait for the outcome")
    job.add_argument("--poll-interval", type=float, default=10.0)
    job.add_argument("--replace-failed", action="store_true",
                     help="delete a failed job of the same name and start again instead of reporting it")
    job.add_argument("--print-manifest", action="store_true", help="print the job object and exit")
    worker.add_arguments(p.add_argument_group("worker (the savflow train options, passed to every process)"))
    p.set_defaults(func=handle)


def spec_from_args(args: argparse.Namespace) -> TrainJobSpec:
    from savflow.launch.jobspec import TrainJobSpec
    from savflow.train import worker

    worker_args = tuple(worker.argv({d: getattr(args, d) for d in worker.option_dests()}, skip_defaults=True))
    extra: dict[str, Any] = {}
    if args.toleration is not None:
        extra["tolerations"] = tuple(args.toleration)
    return TrainJobSpec(
        worker_args=worker_args, image=args.image, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
        cpu=args.cpu, memory=args.memory, shm_size=args.shm_size, scratch_size=args.scratch_size,
        scratch_storage_class=args.scratch_storage_class, node_selector=dict(args.node_selector),
        service_account=args.service_account, credentials_secret=args.credentials_secret, env=dict(args.env),
        backoff_limit=args.backoff_limit, queue_name=args.queue_name, ttl_seconds_after_finished=args.ttl,
        active_deadline_seconds=args.active_deadline, **extra)


def handle(args: argparse.Namespace) -> int:
    import yaml

    from savflow.launch import jobs
    from savflow.train import torchrun

    spec = spec_from_args(args)
    if args.print_manifest:
        if args.backend == "local":
            print(" ".join(torchrun.command(spec.worker_args, spec.procs_per_node, module=spec.worker_module)))
        else:
            body = jobs.KINDS[args.backend].render(spec, args.name, args.namespace)
            sys.stdout.write(yaml.safe_dump(body, sort_keys=False))
        return 0
    try:
        if args.backend == "local":
            outcome = jobs.run_local(spec, timeout_s=args.timeout)
        else:
            outcome = jobs.launch(spec, args.name, namespace=args.namespace, kind=jobs.KINDS[args.backend],
                                      timeout_s=args.timeout, poll_s=args.poll_interval,
                                      replace_failed=args.replace_failed)
    except jobs.LaunchError as exc:
        log.error("%s", exc)
        return 1
    except jobs.LaunchCancelled:
        log.error("cancelled; the job was stopped and deleted")
        return 143
    log.info("training job %s finished in %.0f s%s", outcome.name, outcome.seconds,
             " (adopted from an earlier attempt)" if outcome.adopted else "")
    return 0
