"""``savflow doctor``: check a cluster before a run (operators, GPU nodes, permissions, bucket, KFP API); the
command-line face of :mod:`savflow.preflight.doctor`.

Exit status 0 when nothing failed (the run can work), 1 when a check failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# Only the standard library at the top; register() and handle() import what they use (savflow.pipelines.cli).

COMMANDS = {"doctor": "check that a cluster can run savflow (preflight)"}
EXAMPLES = {
    "doctor": ["savflow doctor --namespace team-a --params-file my-params.yaml --host "
               "https://kubeflow.example.com/pipeline",
               "savflow doctor --namespace savflow --backend trainjob --nodes 2 --gpus-per-node 8 "
               "--node-selector cloud.google.com/gke-accelerator=nvidia-h100-80gb --storage gs://my-bucket/exp "
               "--no-kfp"],
}



def register(subparsers: Any) -> None:
    from savflow.common import deployment
    from savflow.common.cli_types import key_value
    from savflow.pipelines.verbs_cli import connection_options

    p = subparsers.add_parser(
        "doctor", parents=[connection_options()], help=COMMANDS["doctor"],
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run = p.add_argument_group("the run to check for (a sav-finetune params file fills these in)")
    run.add_argument("--params-file", help="sav-finetune parameters (YAML/JSON, e.g. the savflow-defaults "
                                           "ConfigMap's data): backend, nodes, GPUs, node selector, queue, URIs")
    run.add_argument("--backend", choices=["pytorchjob", "trainjob"], help="training backend (default pytorchjob)")
    run.add_argument("--nodes", type=int, help="training nodes (default 1)")
    run.add_argument("--gpus-per-node", type=int, help="GPUs per training node (default 8)")
    run.add_argument("--node-selector", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="labels the GPU nodes must have (the GPU model, e.g. cloud.google.com/gke-accelerator=...)")
    run.add_argument("--queue-name", help="Kueue LocalQueue of the training job")
    run.add_argument("--storage", action="append", default=[], metavar="URI",
                     help="a storage root the run writes (repeatable; default: the params file's)")
    run.add_argument("--pipeline-service-account", default=deployment.PIPELINE_SERVICE_ACCOUNT)
    run.add_argument("--as-self", action="store_true",
                     help="review this identity's permissions instead of the pipeline service account's")
    p.add_argument("--no-kfp", action="store_true", help="do not check the KFP API")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=handle)


STORAGE_PARAMS = ("staged_train", "staged_val", "experiment_dir")


def plan_from_args(args: argparse.Namespace, namespace: str) -> Any:
    from savflow.pipelines.params import load_params_file
    from savflow.preflight.doctor import RunPlan

    params: dict[str, Any] = load_params_file(args.params_file) if args.params_file else {}
    selector = params.get("node_selector") or {}
    if isinstance(selector, str):
        selector = json.loads(selector)
    selector = {**selector, **dict(args.node_selector)}
    storage = args.storage or [str(params[k]) for k in STORAGE_PARAMS if params.get(k)]
    return RunPlan(namespace=namespace, backend=args.backend or str(params.get("train_backend", "pytorchjob")),
                   nodes=args.nodes or int(params.get("nodes", 1)),
                   gpus_per_node=args.gpus_per_node if args.gpus_per_node is not None else
                   int(params.get("gpus_per_node", 8)),
                   node_selector=selector, queue_name=args.queue_name or str(params.get("queue_name", "")),
                   storage_roots=tuple(storage), pipeline_service_account=args.pipeline_service_account,
                   as_self=args.as_self)


def handle(args: argparse.Namespace) -> int:
    from savflow.pipelines.params import ParamError
    from savflow.pipelines.verbs_cli import connect_from_args
    from savflow.preflight import checks, doctor
    from savflow.common.kube import KubeConfigError, current_namespace

    try:
        plan = plan_from_args(args, args.namespace or current_namespace())
        findings = doctor.run_checks(plan, kfp_connect=None if args.no_kfp else (lambda: connect_from_args(args)),
                                     kube_context=args.kube_context)
    except (ParamError, ValueError, KubeConfigError) as exc:
        print(f"savflow doctor: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([f.to_dict() for f in findings], indent=2) if args.json else doctor.report(findings))
    return checks.exit_code(findings)
