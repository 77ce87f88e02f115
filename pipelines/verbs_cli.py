"""The ``compile``, ``submit``, ``schedule`` and ``runs`` subcommands of ``savflow``: thin argv wrappers over
:mod:`savflow.pipelines.compile`, :mod:`savflow.pipelines.kfp_client`, :mod:`savflow.pipelines.schedules` and
:mod:`savflow.pipelines.runs`.

Exit status of ``compile``, ``submit`` and ``schedule``: 0 on success; 1 when a waited-for run ends other than
SUCCEEDED, the wait times out, the API refuses a request, ``schedule update`` stops half-way, or
``compile --check`` finds stale files; 2 on invalid input (parameters, cron, times).
Of ``runs``: 0 done; 1 finished with failures (``metrics`` of a run that did not succeed or left a task without
scores, a waited-for run that did not succeed, a timed-out wait); 2 bad usage or input (no such run or
experiment, a run in the wrong state) or the API or storage unreachable or refusing.
Errors go to stderr on one line, secrets masked (:mod:`savflow.common.secrets`).

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
from typing import TYPE_CHECKING, Any

from savflow.pipelines.cli import ExampleFormatter

if TYPE_CHECKING:
    from savflow.pipelines.kfp_client import Connection, Package
    from savflow.pipelines.schedules import Schedule

COMMANDS = {
    "compile": "compile the pipelines to KFP IR YAML",
    "submit": "start a pipeline run on a Kubeflow Pipelines endpoint",
    "schedule": "manage recurring runs (of sav-evaluate by default)",
    "runs": "list, inspect, score, cancel and retry pipeline runs",
}
EXAMPLES = {
    "compile": ["savflow compile", "savflow compile --check"],
    "submit": ["savflow submit sav-evaluate --host https://kubeflow.example.com/pipeline --param "
               "staged_val=gs://my-bucket/sav/staged/val --param experiment_dir=gs://my-bucket/exp/ft-1"],
    "schedule": ["savflow schedule create --name nightly-eval --cron '0 3 * * *' --param "
                 "staged_val=gs://my-bucket/sav/staged/val --param experiment_dir=gs://my-bucket/exp/ft-1",
                 "savflow schedule update 3f2a9c --cron '30 3 * * 1-5'"],
    "runs": ["savflow runs list --experiment sav-evaluate --state FAILED",
             "savflow runs metrics 6c1f0b   # J&F, J, F per evaluate task",
             "savflow runs retry 6c1f0b --wait"],
}
_EXIT_INVALID = 2


def _names() -> str:
    """The registered pipelines' names, for help texts."""
    from savflow.pipelines.compile import PIPELINES

    return ", ".join(PIPELINES)


def _err(command: str, message: str, status: int) -> int:
    from savflow.common import secrets

    line = " ".join(str(message).split())  # one line
    print(secrets.mask(f"savflow {command}: error: {line}"), file=sys.stderr)
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

def _pem_file(path: str) -> str:
    """``--ca-cert``: an existing file, refused at parsing (exit 2) rather than at the first request."""
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path


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
    g.add_argument("--cookies", help=f"session cookies of a Kubeflow Platform login, for its API from outside the "
                                     f"cluster (NAME=VALUE, several joined by '; ', e.g. oauth2_proxy_kubeflow=...); "
                                     f"sent with any of the credentials here (default: ${kfp_client.COOKIES_ENV}; "
                                     f"prefer the variable)")
    g.add_argument("--sa-token-path", default=os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"),
                   help="projected service-account token file, re-read on each request (in a pod; default: "
                        "$KF_PIPELINES_SA_TOKEN_PATH)")
    g.add_argument("--ca-cert", type=_pem_file, default=os.environ.get(kfp_client.CA_CERT_ENV), metavar="PEM",
                   help=f"CA certificate(s) that signed the endpoint's TLS certificate, when it is not a public CA "
                        f"(default: ${kfp_client.CA_CERT_ENV})")
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
    g.add_argument("--dry-run", action="store_true",
                   help="check the pipeline and its parameters (and the schedule), print what would be sent as "
                        "JSON, parameters typed as they would be, and exit without contacting KFP")
    return p


def connect_from_args(args: argparse.Namespace) -> Connection:
    from savflow.common import secrets
    from savflow.pipelines import kfp_client

    secrets.install_log_masking()  # -v logs kfp's requests and answers; connect() adds the credentials it uses
    return kfp_client.connect(host=args.host, namespace=args.namespace, token=args.token,
                              sa_token_path=args.sa_token_path, kube_context=args.kube_context,
                              ui_host=args.ui_host, kfp_namespace=args.kfp_namespace, cookies=args.cookies,
                              ca_cert=args.ca_cert)


def _package_and_params(args: argparse.Namespace, workdir: str) -> tuple[Package, dict]:
    from savflow.pipelines import kfp_client, params

    package = kfp_client.prepare_package(args.pipeline, workdir)
    file_params = params.load_params_file(args.params_file) if args.params_file else {}
    resolved = params.resolve_params(file_params, params.parse_assignments(args.param), package.parameter_types,
                                     file_name=args.params_file or "params file")
    return package, resolved


def _api_message(exc: Any) -> str:
    """The server's own message of an API error (grpc-gateway's JSON body), else the whole body."""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    try:
        message = json.loads(body).get("message") or body
    except (TypeError, ValueError, AttributeError):
        message = body
    return f"KFP API answered {exc.status} {exc.reason}: {message}"


def _call_api(command: str, call: Callable[[], int], *, refused: int = 1) -> int:
    """Run the part of a verb that talks to KFP; a refusal, an unreachable endpoint or a timeout is exit
    ``refused``, an :class:`savflow.pipelines.schedules.UpdateError` exit 1."""
    import kfp_server_api
    import urllib3

    from savflow.common.storage_errors import StorageError
    from savflow.pipelines.schedules import UpdateError

    try:
        return call()
    except kfp_server_api.ApiException as exc:
        return _err(command, _api_message(exc), refused)
    except urllib3.exceptions.HTTPError as exc:
        return _err(command, f"cannot reach the KFP API: {exc}", refused)
    except UpdateError as exc:
        return _err(command, str(exc), 1)
    except StorageError as exc:
        return _err(command, f"cannot read the run's outputs: {exc}", refused)
    except TimeoutError as exc:
        return _err(command, str(exc), 1)
    except ValueError as exc:
        return _err(command, str(exc), refused)


# --- submit ---------------------------------------------------------------------------------------------------

def _dry_run(package: Package, values: dict, **settings: Any) -> int:
    """``--dry-run``: what would be sent, as JSON on stdout; exit 0."""
    print(json.dumps({"pipeline": package.name, **settings, "parameters": values}, indent=2, sort_keys=True))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from savflow.pipelines import kfp_client

    with tempfile.TemporaryDirectory(prefix="savflow-submit-") as workdir:
        try:
            package, values = _package_and_params(args, workdir)
        except ValueError as exc:
            return _err("submit", str(exc), _EXIT_INVALID)
        if args.dry_run:
            return _dry_run(package, values, experiment=args.experiment, run_name=args.run_name)

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
        if args.dry_run:
            from savflow.pipelines.cron import to_kfp_cron

            return _dry_run(package, values, experiment=args.experiment, name=args.name, cron=to_kfp_cron(args.cron))

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


def _schedule_update(args: argparse.Namespace) -> int:
    from savflow.pipelines import kfp_client, params, schedules
    from savflow.pipelines.cron import normalize_time, to_kfp_cron

    command = "schedule update"
    with tempfile.TemporaryDirectory(prefix="savflow-schedule-") as workdir:
        try:  # everything that can be checked here, before the server is asked anything
            if (args.upload or args.version_name) and not args.pipeline:
                raise ValueError("--upload and --version-name go with --pipeline (the new pipeline to run)")
            package = kfp_client.prepare_package(args.pipeline, workdir) if args.pipeline else None
            file_params = params.load_params_file(args.params_file) if args.params_file else {}
            cli_params = params.parse_assignments(args.param)
            if args.cron is not None:
                to_kfp_cron(args.cron)
            if args.max_concurrency is not None:
                schedules.check_schedule(None, args.max_concurrency)
            for stamp in (args.start_time, args.end_time):
                if stamp:
                    normalize_time(stamp)
        except ValueError as exc:
            return _err(command, str(exc), _EXIT_INVALID)

        def call() -> int:
            try:
                result = schedules.update_schedule(
                    connect_from_args(args), args.id, package=package, file_params=file_params,
                    cli_params=cli_params, name=args.name, cron=args.cron, max_concurrency=args.max_concurrency,
                    catchup=args.catchup, start_time=args.start_time, end_time=args.end_time, enabled=args.enabled,
                    description=args.description, upload=args.upload, version_name=args.version_name,
                    pipeline_root=args.pipeline_root, service_account=args.service_account)
            except ValueError as exc:  # checked against the old recurring run: parameters, times, its trigger
                return _err(command, str(exc), _EXIT_INVALID)
            if args.json:
                print(json.dumps(result.to_dict(), indent=2))
                return 0
            print(f"replaced {result.old_id} by {result.schedule.recurring_run_id}")
            if result.dropped_params:
                print(f"dropped parameters the new pipeline does not declare: {', '.join(result.dropped_params)}")
            _print_schedules([result.schedule], False)
            return 0

        return _call_api(command, call)


def _schedule(args: argparse.Namespace) -> int:
    from savflow.pipelines import schedules

    if args.action == "create":
        return _schedule_create(args)
    if args.action == "update":
        return _schedule_update(args)

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
                    "cron schedule, list them, pause or resume one, update one (replaced under the same name), "
                    "delete one.",
        formatter_class=ExampleFormatter)
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

    u = actions.add_parser(
        "update", parents=[conn], help="change a recurring run (replaces it: new id, same name)",
        formatter_class=ExampleFormatter,
        description="Change a recurring run's schedule, parameters or pipeline. KFP cannot update a recurring run "
                    "in place, so this creates a new one with the old one's name and settings, changed where an "
                    "option is given, then deletes the old one: the new one is created disabled, the old one "
                    "deleted, then the new one enabled (if the old one was, or --enabled), so the two never both "
                    "trigger. The new one has a new id. --param values are typed by the pipeline's declared "
                    "inputs and merged over the old parameters.",
        epilog="example:\n  savflow schedule update 3f2a... --cron '0 4 * * *' --param infer_shards=8\n"
               "  savflow schedule update 3f2a... --pipeline sav-evaluate --upload   # run the installed code")
    u.add_argument("id", metavar="ID", help="recurring run id (from `savflow schedule list`)")
    u.add_argument("--name", help="display name of the new one (default: the old one's)")
    u.add_argument("--cron", help="new cron expression, 5 fields (see `schedule create --help`)")
    u.add_argument("--max-concurrency", type=int, help="most runs at once, 1-10")
    catch = u.add_mutually_exclusive_group()
    catch.add_argument("--catchup", dest="catchup", action="store_true", default=None,
                       help="backfill missed intervals")
    catch.add_argument("--no-catchup", dest="catchup", action="store_false", help="run only the latest interval")
    u.add_argument("--start-time", help="ISO 8601 time before which nothing runs ('' for none)")
    u.add_argument("--end-time", help="ISO 8601 time after which nothing runs ('' for none)")
    mode = u.add_mutually_exclusive_group()
    mode.add_argument("--paused", dest="enabled", action="store_false", default=None,
                      help="leave the new one disabled")
    mode.add_argument("--enabled", dest="enabled", action="store_true", help="enable the new one")
    u.add_argument("--description", help="description shown in the UI")
    u.add_argument("--pipeline", help=f"run this pipeline instead: {_names()}, or a compiled .yaml (default: the "
                                      "old one's spec or pipeline version)")
    u.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter to change, repeatable; wins over --params-file")
    u.add_argument("--params-file", metavar="YAML", help="YAML mapping of parameters to change")
    u.add_argument("--upload", action="store_true", help="with --pipeline: store it as a pipeline version")
    u.add_argument("--version-name", help="with --pipeline --upload: name of the version")
    u.add_argument("--pipeline-root", help="artifact root for the runs (default: the old one's)")
    u.add_argument("--service-account", help="Kubernetes service account of the runs (default: the old one's)")
    u.add_argument("--json", action="store_true", help="print the result as JSON")

    for action, text in (("pause", "stop triggering new runs (running ones go on)"),
                         ("resume", "start triggering runs again"),
                         ("delete", "delete the recurring run (its past runs stay)")):
        a = actions.add_parser(action, parents=[conn], help=text, description=f"{action.capitalize()}: {text}.")
        a.add_argument("id", metavar="ID", help="recurring run id (from `savflow schedule list`)")
        if action != "delete":
            a.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_schedule)


# --- runs -----------------------------------------------------------------------------------------------------

def _table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, the last one as it is."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_run(info, as_json: bool) -> None:  # noqa: ANN001 - a savflow.pipelines.runs.RunInfo
    if as_json:
        print(json.dumps(info.to_dict(), indent=2, default=str))
        return
    for key in ("run_id", "name", "state", "pipeline", "experiment_id", "recurring_run_id", "created_at",
                "finished_at", "url", "error"):
        value = getattr(info, key)
        if value is not None:
            print(f"{key}: {value}")
    print("parameters:" if info.parameters else "parameters: {}")
    for key, value in sorted(info.parameters.items()):
        print(f"  {key}: {json.dumps(value) if not isinstance(value, str) else value}")
    if info.tasks:
        print("tasks:")
        for task in info.tasks:
            print(f"  {task['name']}: {task['state'] or '-'}")


def _runs(args: argparse.Namespace) -> int:
    from savflow.pipelines import kfp_client, runs

    command = f"runs {args.action}"

    def waited(conn: Connection, run_id: str) -> int:
        state = kfp_client.wait_for_run(conn, run_id, args.timeout, args.poll_interval)
        print(f"state: {state}")
        return 0 if state == ("CANCELED" if args.action == "cancel" else "SUCCEEDED") else 1

    def call() -> int:
        try:
            conn = connect_from_args(args)
            if args.action == "list":
                found = runs.list_runs(conn, args.experiment, args.state, limit=args.limit)
                if args.json:
                    print(json.dumps([r.to_dict() for r in found], indent=2, default=str))
                else:
                    _table([("ID", "STATE", "CREATED", "NAME")] +
                           [(r.run_id, r.state or "-", r.created_at or "-", r.name) for r in found])
                return 0
            if args.action == "get":
                _print_run(runs.get_run(conn, args.run_id), args.json)
                return 0
            if args.action == "metrics":
                result = runs.run_metrics(conn, args.run_id)
                if args.json:
                    print(json.dumps(result.to_dict(), indent=2))
                else:
                    info = result.run
                    print(f"run {info.run_id} ({info.pipeline or 'unknown pipeline'}, {info.state or '-'}): "
                          f"{info.name}")
                    if result.tasks:
                        _table([("TASK", "STATE", "J&F", "J", "F", "VIDEOS", "METRICS")] +
                               [(t.task, t.state or "-", _fmt(t.jf), _fmt(t.j), _fmt(t.f),
                                 "-" if t.num_videos is None else str(t.num_videos),
                                 t.uri if t.ok else f"{t.uri} ({t.error})") for t in result.tasks])
                    else:
                        print(f"no evaluation metrics under {result.eval_dir}")
                return 0 if result.complete else 1
            if args.action == "cancel":
                info, asked = runs.cancel_run(conn, args.run_id)
                print(f"canceling {info.run_id}: now {info.state}" if asked
                      else f"{info.run_id} is already {info.state}")
                return waited(conn, info.run_id) if args.wait else 0
            info = runs.retry_run(conn, args.run_id)
            print(f"retrying {info.run_id}: now {info.state}")
            return waited(conn, info.run_id) if args.wait else 0
        except runs.RunError as exc:
            return _err(command, str(exc), _EXIT_INVALID)

    return _call_api(command, call, refused=_EXIT_INVALID)


def _register_runs(sub: argparse._SubParsersAction) -> None:
    from savflow.pipelines.runs import RUN_STATES

    conn = connection_options()
    p = sub.add_parser(
        "runs", help=COMMANDS["runs"], formatter_class=ExampleFormatter,
        description="Pipeline runs on a KFP v2 endpoint: list them (newest first, by experiment and state), show "
                    "one, print the J&F, J and F of each of its evaluate tasks (read from the metrics.json they "
                    "wrote under {experiment_dir}/eval/{run id}/), cancel one, retry a failed or canceled one. "
                    "Exit status: 0 done; 1 finished with failures (metrics of a run that did not succeed or "
                    "left a task without scores; --wait ending otherwise than hoped); 2 bad usage or input, or "
                    "the API or storage unreachable.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", parents=[conn], help="list runs, newest first",
                            formatter_class=ExampleFormatter,
                            description="List runs in the namespace or one experiment, newest first.",
                            epilog="example:\n  savflow runs list --experiment nightly --state RUNNING --limit 5")
    ls.add_argument("--experiment", help="only this experiment's runs (by name)")
    ls.add_argument("--state", type=str.upper, choices=RUN_STATES[:-1], metavar="STATE",
                    help=f"only runs in this state: {', '.join(RUN_STATES[:-1])}")
    ls.add_argument("--limit", type=int, default=50, help="at most this many runs, 0 for all (default: %(default)s)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    texts = {"get": ("show a run: state, parameters, tasks", "savflow runs get 6c1f... --json"),
             "metrics": ("J&F, J and F of each evaluate task of a run; exit 1 unless it succeeded with all scores",
                         "savflow runs metrics 6c1f..."),
             "cancel": ("terminate a run (its pods are stopped)", "savflow runs cancel 6c1f... --wait"),
             "retry": ("retry a FAILED or CANCELED run in place (same id; failed tasks run again)",
                       "savflow runs retry 6c1f... --wait --timeout 7200")}
    for action, (text, example) in texts.items():
        a = actions.add_parser(action, parents=[conn], help=text, description=f"{text[0].upper()}{text[1:]}.",
                               formatter_class=ExampleFormatter,
                               epilog=f"example:\n  {example}")
        a.add_argument("run_id", metavar="RUN_ID", help="run id (from `savflow runs list` or `savflow submit`)")
        if action in ("get", "metrics"):
            a.add_argument("--json", action="store_true", help="print JSON")
        else:
            a.add_argument("--wait", action="store_true",
                           help="wait for the run to end; exit 1 unless it ends "
                                f"{'CANCELED' if action == 'cancel' else 'SUCCEEDED'}")
            a.add_argument("--timeout", type=float, default=86400.0,
                           help="seconds to wait with --wait before giving up with exit 1 (default: %(default)g)")
            a.add_argument("--poll-interval", type=float, default=10.0,
                           help="seconds between state checks with --wait (default: %(default)g)")
    p.set_defaults(func=_runs)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compile``, ``submit``, ``schedule`` and ``runs`` to the ``savflow`` command."""
    _register_compile(subparsers)
    _register_submit(subparsers)
    _register_schedule(subparsers)
    _register_runs(subparsers)
