"""The ``compile``, ``submit`` and ``schedule`` subcommands of ``savflow``: thin argv wrappers over
:mod:`savflow.pipelines.compile` and :mod:`savflow.pipelines.kfp_client`.

Exit status: 0 on success; 1 when a waited-for run ends other than SUCCEEDED, the wait times out, the API
refuses a request, or ``compile --check`` finds stale files; 2 on invalid input (parameters, cron, times).

Only the standard library at the top: the option declarations import the light modules they take names and
defaults from, and the handlers import the rest; kfp itself comes only with compiling or connecting, and the
pipeline modules only with compiling (see :mod:`savflow.pipelines.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from savflow.pipelines.kfp_client import Connection, Package
    from savflow.pipelines.schedules import Schedule

COMMANDS = {
    "compile": "compile the pipelines to KFP IR YAML",
    "submit": "start a pipeline run on a Kubeflow Pipelines endpoint",
    "schedule": "manage recurring runs (of sav-evaluate by default)",
}
_EXIT_INVALID = 2


def _names() -> str:
    """The registered pipelines' names, for help texts."""
    from savflow.pipelines.compile import PIPELINES

    return ", ".join(PIPELINES)


def _err(command: str, message: str, status: int) -> int:
    print(f"savflow {command}: error: {message}", file=sys.stderr)
    return status


# --- compile --------------------------------------------------------------------------------------------------

def _compile(args: argparse.Namespace) -> int:
    from savflow.pipelines import compile as compile_mod

    names = args.names or None
    try:
        if args.check:
            stale = compile_mod.is_stale(args.out_dir, names)
            for name in stale:
                print(f"stale: {Path(args.out_dir) / f'{name}.yaml'} (run `savflow compile`)")
            return 1 if stale else 0
        for path in compile_mod.compile_all(args.out_dir, names):
            print(path)
    except ValueError as exc:
        return _err("compile", str(exc), _EXIT_INVALID)
    return 0


def _register_compile(sub: argparse._SubParsersAction) -> None:
    from savflow.pipelines.compile import COMPILED_DIR

    names = _names()
    p = sub.add_parser(
        "compile", help=COMMANDS["compile"],
        description=f"Compile the pipelines ({names}) to KFP v2 IR YAML, one file per pipeline named "
                    f"NAME.yaml. The files under pipelines/compiled/ are committed: upload them through the KFP "
                    f"UI, or let `savflow submit` compile afresh. --check compares instead of writing and exits 1 "
                    f"when a committed file differs from what the code compiles to.")
    p.add_argument("names", nargs="*", metavar="NAME", help=f"pipelines to compile (default: all of {names})")
    p.add_argument("--out-dir", default=str(COMPILED_DIR),
                   help="folder for NAME.yaml (default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and list the files that are missing or stale")
    p.set_defaults(func=_compile)


# --- shared options -------------------------------------------------------------------------------------------

def connection_options() -> argparse.ArgumentParser:
    from savflow.pipelines import kfp_client

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("Kubeflow Pipelines endpoint and credentials")
    g.add_argument("--host", default=os.environ.get("KF_PIPELINES_ENDPOINT"),
                   help="KFP API address, e.g. https://kubeflow.example.com/pipeline, or http://localhost:8080 "
                        "after `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80` (default: "
                        "$KF_PIPELINES_ENDPOINT; without either, the in-cluster service, else the kubeconfig's "
                        "API-server proxy)")
    g.add_argument("--ui-host", help="KFP UI address for printed links (default: the --host)")
    g.add_argument("--namespace", help="your Kubeflow profile namespace on a multi-user install (where runs and "
                                       "experiments live; not where KFP is installed)")
    g.add_argument("--kfp-namespace", default=kfp_client.DEFAULT_KFP_NAMESPACE,
                   help="namespace Kubeflow Pipelines is installed in, used to find its API when no --host is "
                        "given (default: %(default)s)")
    g.add_argument("--token", help=f"bearer token for the API (default: ${kfp_client.TOKEN_ENV}; prefer the "
                                   f"variable, a flag shows in the process list)")
    g.add_argument("--sa-token-path", default=os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"),
                   help="projected service-account token file, re-read on each request (in a pod; default: "
                        "$KF_PIPELINES_SA_TOKEN_PATH)")
    g.add_argument("--kube-context", help="kubeconfig context, when neither --host nor a token is given")
    return p


def _run_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("what to run")
    g.add_argument("--experiment", default="Default",
                   help="experiment name, created when missing (default: %(default)s)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter, repeatable; typed by the pipeline's declared type (int, float, bool, "
                        "JSON list/object, string); wins over --params-file")
    g.add_argument("--params-file", metavar="YAML", help="YAML mapping of parameter name to value")
    g.add_argument("--upload", action="store_true",
                   help="store the pipeline as a version in KFP's pipeline list (reused when unchanged) and run "
                        "that version, instead of sending the spec inline")
    g.add_argument("--version-name", help="name of the uploaded version (default: pipeline name + content hash)")
    g.add_argument("--pipeline-root", help="artifact root for the run, e.g. gs://bucket/kfp (default: the "
                                           "pipeline's or the cluster's)")
    g.add_argument("--service-account", help="Kubernetes service account the run's pods use")
    return p


def connect_from_args(args: argparse.Namespace) -> Connection:
    from savflow.pipelines import kfp_client

    return kfp_client.connect(host=args.host, namespace=args.namespace, token=args.token,
                              sa_token_path=args.sa_token_path, kube_context=args.kube_context,
                              ui_host=args.ui_host, kfp_namespace=args.kfp_namespace)


def _package_and_params(args: argparse.Namespace, workdir: str) -> tuple[Package, dict]:
    from savflow.pipelines import kfp_client, params

    package = kfp_client.prepare_package(args.pipeline, workdir)
    file_params = params.load_params_file(args.params_file) if args.params_file else {}
    resolved = params.resolve_params(file_params, params.parse_assignments(args.param), package.parameter_types,
                                     file_name=args.params_file or "params file")
    return package, resolved


def _call_api(command: str, call: Callable[[], int]) -> int:
    """Run the part of a verb that talks to KFP; a refusal, an unreachable endpoint or a timeout is exit 1."""
    import kfp_server_api
    import urllib3

    try:
        return call()
    except kfp_server_api.ApiException as exc:
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        return _err(command, f"KFP API answered {exc.status} {exc.reason}: {body}", 1)
    except urllib3.exceptions.HTTPError as exc:
        return _err(command, f"cannot reach the KFP API: {exc}", 1)
    except (TimeoutError, ValueError) as exc:
        return _err(command, str(exc), 1)


# --- submit ---------------------------------------------------------------------------------------------------

def _submit(args: argparse.Namespace) -> int:
    from savflow.pipelines import kfp_client

    with tempfile.TemporaryDirectory(prefix="savflow-submit-") as workdir:
        try:
            package, values = _package_and_params(args, workdir)
        except ValueError as exc:
            return _err("submit", str(exc), _EXIT_INVALID)

        def call() -> int:
            result = kfp_client.submit(
                connect_from_args(args), package, values, experiment=args.experiment, run_name=args.run_name,
                wait=args.wait, timeout=args.timeout, poll_interval=args.poll_interval, upload=args.upload,
                version_name=args.version_name, pipeline_root=args.pipeline_root,
                service_account=args.service_account)
            print(f"run_id: {result.run_id}")
            print(f"url: {result.url or '(unknown: give --host or --ui-host)'}")
            if result.state is None:
                return 0
            print(f"state: {result.state}")
            return 0 if result.state == "SUCCEEDED" else 1

        return _call_api("submit", call)


def _register_submit(sub: argparse._SubParsersAction) -> None:
    names = _names()
    p = sub.add_parser(
        "submit", parents=[connection_options(), _run_options()],
        help=COMMANDS["submit"],
        description="Create a run of a pipeline on a KFP v2 endpoint and print its id and UI link. The pipeline "
                    f"is a name ({names}), compiled afresh from the installed code, or a compiled .yaml file. "
                    "Parameters are checked against the pipeline's declared inputs before anything is sent. "
                    "With --wait, poll until the run ends, print its final state and exit 0 only if it "
                    "SUCCEEDED.")
    p.add_argument("pipeline", metavar="PIPELINE", help=f"{names}, or a compiled pipeline .yaml path")
    p.add_argument("--run-name", help="display name of the run (default: pipeline name and UTC time)")
    p.add_argument("--wait", action="store_true", help="wait for the run to end and exit 1 unless it SUCCEEDED")
    p.add_argument("--timeout", type=float, default=86400.0,
                   help="seconds to wait with --wait before giving up with exit 1 (default: %(default)g)")
    p.add_argument("--poll-interval", type=float, default=10.0,
                   help="seconds between state checks with --wait (default: %(default)g)")
    p.set_defaults(func=_submit)


# --- schedule -------------------------------------------------------------------------------------------------

def _print_schedules(schedules: list[Schedule], as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.to_dict() for s in schedules], indent=2))
        return
    rows = [("ID", "STATUS", "CRON", "MAX", "CATCHUP", "NAME")]
    rows += [(s.recurring_run_id, s.status, s.cron or "-", str(s.max_concurrency),
              "no" if s.no_catchup else "yes", s.name) for s in schedules]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def _schedule_create(args: argparse.Namespace) -> int:
    from savflow.pipelines import schedules

    with tempfile.TemporaryDirectory(prefix="savflow-schedule-") as workdir:
        try:
            package, values = _package_and_params(args, workdir)
            schedules.check_schedule(args.cron, args.max_concurrency, args.start_time, args.end_time)
        except ValueError as exc:
            return _err("schedule create", str(exc), _EXIT_INVALID)

        def call() -> int:
            created = schedules.create_schedule(
                connect_from_args(args), package, values, name=args.name, cron=args.cron, experiment=args.experiment,
                max_concurrency=args.max_concurrency, catchup=args.catchup, start_time=args.start_time,
                end_time=args.end_time, enabled=not args.paused, description=args.description,
                upload=args.upload, version_name=args.version_name, pipeline_root=args.pipeline_root,
                service_account=args.service_account)
            _print_schedules([created], args.json)
            return 0

        return _call_api("schedule create", call)


def _schedule(args: argparse.Namespace) -> int:
    from savflow.pipelines import schedules

    if args.action == "create":
        return _schedule_create(args)

    def call() -> int:
        conn = connect_from_args(args)
        if args.action == "list":
            _print_schedules(schedules.list_schedules(conn, args.experiment), args.json)
        elif args.action == "delete":
            schedules.delete_schedule(conn, args.id)
            print(f"deleted {args.id}")
        else:
            verb = schedules.pause_schedule if args.action == "pause" else schedules.resume_schedule
            _print_schedules([verb(conn, args.id)], args.json)
        return 0

    return _call_api(f"schedule {args.action}", call)


def _register_schedule(sub: argparse._SubParsersAction) -> None:
    conn = connection_options()
    p = sub.add_parser(
        "schedule", help=COMMANDS["schedule"],
        description="Manage KFP recurring runs: create one that runs a pipeline (sav-evaluate by default) on a "
                    "cron schedule, list them, pause or resume one, delete one.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = actions.add_parser(
        "create", parents=[conn, _run_options()], help="create a recurring run",
        description="Create a recurring run on a cron schedule. --cron takes a standard 5-field expression "
                    "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 1-5' = 03:00 on weekdays); "
                    "KFP wants seconds first, so '0 ' is prefixed (a 6-field expression is taken as having "
                    "seconds already; @daily, @weekly, ... pass unchanged). The scheduler reads cron in its own "
                    "time zone, usually UTC. Missed runs are not caught up unless --catchup is given.")
    c.add_argument("--name", required=True, help="display name of the recurring run")
    c.add_argument("--cron", required=True, help="cron expression, 5 fields (see above)")
    c.add_argument("--pipeline", default="sav-evaluate",
                   help=f"{_names()}, or a compiled pipeline .yaml path (default: %(default)s)")
    c.add_argument("--max-concurrency", type=int, default=1,
                   help="most runs of this schedule at once, 1-10 (default: %(default)s)")
    c.add_argument("--catchup", action="store_true",
                   help="backfill every interval missed while paused or behind (default: only the latest)")
    c.add_argument("--start-time", help="ISO 8601 time before which nothing runs (no zone = UTC)")
    c.add_argument("--end-time", help="ISO 8601 time after which nothing runs (no zone = UTC)")
    c.add_argument("--paused", action="store_true", help="create it disabled; start it with `schedule resume`")
    c.add_argument("--description", help="description shown in the UI")
    c.add_argument("--json", action="store_true", help="print the result as JSON")

    ls = actions.add_parser("list", parents=[conn], help="list recurring runs",
                            description="List recurring runs in the namespace, or in one experiment.")
    ls.add_argument("--experiment", help="only this experiment's recurring runs")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    for action, text in (("pause", "stop triggering new runs (running ones go on)"),
                         ("resume", "start triggering runs again"),
                         ("delete", "delete the recurring run (its past runs stay)")):
        a = actions.add_parser(action, parents=[conn], help=text, description=f"{action.capitalize()}: {text}.")
        a.add_argument("id", metavar="ID", help="recurring run id (from `savflow schedule list`)")
        if action != "delete":
            a.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_schedule)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compile``, ``submit`` and ``schedule`` to the ``savflow`` command."""
    _register_compile(subparsers)
    _register_submit(subparsers)
    _register_schedule(subparsers)
