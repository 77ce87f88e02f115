"""The Kubeflow Pipelines verbs (submit a run, manage recurring runs) as plain functions over ``kfp.Client``.

Each verb takes a :class:`Connection` made by :func:`connect` and returns what the CLI's ``submit`` and
``schedule`` subcommands print, so scripts and tests can call them without argv. Only public ``kfp.Client``
methods are used, plus its generated ``client.pipelines`` API for the one call it has no method for.

KFP's cron schedules have six fields, seconds first (robfig/cron); users think in the standard five, so
:func:`to_kfp_cron` checks a standard expression field by field and prefixes ``0`` seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from savflow.pipelines import compile as compile_mod

log = logging.getLogger(__name__)

TOKEN_ENV = "KF_PIPELINES_TOKEN"
# Where a standard Kubeflow install runs the KFP API server (kfp.Client's own default).
DEFAULT_KFP_NAMESPACE = "kubeflow"
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
MAX_CONCURRENCY_LIMIT = 10  # the KFP API server rejects recurring runs above this
_EQUALS = 1  # filter.proto Predicate.Operation EQUALS, as kfp.Client itself sends it


@dataclass(frozen=True)
class Connection:
    """A configured client plus what the verbs need beside it: the UI base for links and the namespace."""

    client: Any
    ui_base: str | None
    namespace: str | None


@dataclass(frozen=True)
class Package:
    """A compiled pipeline file with its name and declared root parameter types (``NUMBER_INTEGER``, ...)."""

    path: Path
    name: str
    parameter_types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """A created run; ``state`` is its final state when waited for, else None."""

    run_id: str
    url: str | None
    state: str | None


@dataclass(frozen=True)
class Schedule:
    """The parts of a KFP recurring run a user checks: what, when, how many at once, and whether it is on."""

    recurring_run_id: str
    name: str
    status: str
    cron: str | None
    max_concurrency: int
    no_catchup: bool
    experiment_id: str | None
    start_time: str | None
    end_time: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kfp.Client prints links itself; send those prints to the debug log so stdout carries only ours."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for line in buf.getvalue().splitlines():
            log.debug("kfp: %s", line)


def _with_scheme(url: str) -> str:
    return url if url.startswith(("http://", "https://")) else "https://" + url


def _client_class() -> type:
    """``kfp.Client`` that keeps its API-server proxy path when the kubeconfig authenticates with a token.

    Without a host, kfp.Client loads the kubeconfig into its configuration and appends the service-proxy path
    to the API server's address (kfp/client/client.py ``_load_config``). For token users (GKE's auth plugin,
    service-account tokens) kubernetes' loader also installs a ``refresh_api_key_hook`` that copies the
    kubeconfig's ``host`` back into the configuration before every request
    (kubernetes/config/kube_config.py ``_set_config``), so every request after the first loses the path and
    reaches the API server's root instead of KFP. The hook is wrapped to restore the proxied address.
    """
    import kfp

    class Client(kfp.Client):
        def _load_config(self, *args: Any, **kwargs: Any) -> Any:
            config = super()._load_config(*args, **kwargs)
            hook, proxied = config.refresh_api_key_hook, config.host
            if hook is not None and "/services/ml-pipeline:http/proxy" in (proxied or ""):
                def refresh(configuration: Any) -> None:
                    hook(configuration)
                    configuration.host = proxied

                config.refresh_api_key_hook = refresh
            return config

    return Client


def connect(host: str | None = None, namespace: str | None = None, token: str | None = None,
            sa_token_path: str | None = None, kube_context: str | None = None,
            ui_host: str | None = None, kfp_namespace: str = DEFAULT_KFP_NAMESPACE) -> Connection:
    """Make a ``kfp.Client``.

    Two namespaces, which kfp.Client's constructor conflates: ``kfp_namespace`` is where Kubeflow Pipelines is
    installed, used only to find the API without ``host`` (``ml-pipeline.{kfp_namespace}.svc`` in a pod, or the
    kubeconfig's API-server proxy to that service); ``namespace`` is the user's profile namespace on a
    multi-user install, sent with every request (experiments, runs, recurring runs). Passing the profile
    namespace to the constructor, as kfp's docs suggest, makes it look for the API server in the profile
    namespace (sdk/python/kfp/client/client.py, ``_load_config``: ``_IN_CLUSTER_DNS_NAME.format(namespace)`` and
    ``_KUBE_PROXY_PATH.format(namespace)``).

    Credentials, first that applies: ``token`` (else ``$KF_PIPELINES_TOKEN``) as a bearer token; a projected
    service-account token file ``sa_token_path`` (re-read on every request, as the kubelet rotates it); else
    whatever kfp.Client finds itself (IAP client id from ``$KF_PIPELINES_IAP_OAUTH2_CLIENT_ID``, the in-cluster
    config, or the kubeconfig's API-server proxy when no host is given).
    """
    from kfp.client import ServiceAccountTokenVolumeCredentials

    token = token or os.environ.get(TOKEN_ENV) or None
    credentials = ServiceAccountTokenVolumeCredentials(sa_token_path) if sa_token_path and not token else None
    host = host or os.environ.get("KF_PIPELINES_ENDPOINT") or None
    kfp_namespace = kfp_namespace or DEFAULT_KFP_NAMESPACE
    # With a host the constructor's namespace only sets the user's (and a given one skips the multi-user
    # healthz probe); without one it is where the constructor looks for the API.
    constructor_namespace = (namespace or DEFAULT_KFP_NAMESPACE) if host else kfp_namespace
    with warnings.catch_warnings(), _quiet():
        warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline",
                                category=FutureWarning)
        client = _client_class()(host=host, namespace=constructor_namespace, existing_token=token,
                                 credentials=credentials, kube_context=kube_context, ui_host=ui_host)
    if not host and (namespace or kfp_namespace != DEFAULT_KFP_NAMESPACE):
        # The constructor takes a non-default namespace as the user's too (client.py: "If custom namespace
        # provided, overwrite ... context settings"); the user's is the one kfp must fall back to.
        # set_user_namespace() would also write ~/.config/kfp/context.json, so only the in-memory setting
        # changes.
        client._context_setting["namespace"] = namespace or ""  # noqa: SLF001 - see above
    base = (os.environ.get("KF_PIPELINES_UI_ENDPOINT") or ui_host or host
            or os.environ.get("KF_PIPELINES_ENDPOINT"))
    return Connection(client=client, ui_base=_with_scheme(base).rstrip("/") if base else None,
                      namespace=namespace or None)


def read_package(path: str | Path) -> Package:
    """Read a compiled pipeline YAML: its name and the types of its root parameters."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise ValueError(f"{path}: expected a compiled pipeline .yaml file")
    try:
        doc = next(yaml.safe_load_all(path.read_text()))
    except (OSError, StopIteration, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the compiled pipeline: {exc}") from exc
    if not isinstance(doc, dict) or "pipelineInfo" not in doc or "root" not in doc:
        raise ValueError(f"{path}: not a KFP pipeline spec (no pipelineInfo/root)")
    params = doc["root"].get("inputDefinitions", {}).get("parameters", {})
    return Package(path=path, name=doc["pipelineInfo"]["name"],
                   parameter_types={k: v.get("parameterType", "") for k, v in params.items()})


def prepare_package(pipeline: str | Path | Any, workdir: str | Path) -> Package:
    """Turn a registered pipeline name, a compiled YAML path or a @dsl.pipeline function into a package.

    Names and functions are compiled afresh into ``workdir``, so a run always uses the installed code.
    """
    if isinstance(pipeline, (str, Path)):
        if str(pipeline) in compile_mod.PIPELINES:
            name = str(pipeline)
            return read_package(compile_mod.compile_pipeline(name, Path(workdir) / f"{name}.yaml"))
        if Path(pipeline).is_file():
            return read_package(pipeline)
        raise ValueError(f"{pipeline}: neither a pipeline name ({', '.join(compile_mod.PIPELINES)}) "
                         f"nor a compiled pipeline file")
    from kfp import compiler

    path = Path(workdir) / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    return read_package(path)


def _display_name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": _EQUALS, "key": "display_name", "stringValue": name}]})


def ensure_pipeline_version(conn: Connection, package: Package,
                            version_name: str | None = None) -> tuple[str, str]:
    """Store ``package`` as a version of the pipeline named like it; return (pipeline_id, version_id).

    The default version name carries the file's content hash, so submitting unchanged code again reuses the
    version instead of piling up copies. A missing pipeline is created empty first (v2beta1 CreatePipeline makes
    no version, unlike the upload endpoint, which would name the first version after the pipeline).
    """
    import kfp_server_api

    client = conn.client
    version_name = version_name or f"{package.name}-{hashlib.sha256(package.path.read_bytes()).hexdigest()[:12]}"
    with _quiet():
        found = client.list_pipelines(filter=_display_name_filter(package.name), namespace=conn.namespace)
        if found.pipelines:
            pipeline_id = found.pipelines[0].pipeline_id
            existing = client.list_pipeline_versions(pipeline_id, filter=_display_name_filter(version_name))
            if existing.pipeline_versions:
                return pipeline_id, existing.pipeline_versions[0].pipeline_version_id
        else:
            created = client.pipelines.pipeline_service_create_pipeline(
                pipeline=kfp_server_api.V2beta1Pipeline(display_name=package.name, namespace=conn.namespace))
            pipeline_id = created.pipeline_id
        version = client.upload_pipeline_version(str(package.path), version_name, pipeline_id=pipeline_id)
        return pipeline_id, version.pipeline_version_id


def _pipeline_source(conn: Connection, package: Package, upload: bool, version_name: str | None) -> dict[str, Any]:
    if not upload:
        return {"pipeline_package_path": str(package.path)}
    pipeline_id, version_id = ensure_pipeline_version(conn, package, version_name)
    return {"pipeline_id": pipeline_id, "version_id": version_id}


def _experiment_id(conn: Connection, experiment: str) -> str:
    """Get or create the experiment by name (kfp.Client.create_experiment looks it up first)."""
    with _quiet():
        return conn.client.create_experiment(name=experiment, namespace=conn.namespace).experiment_id


def run_url(conn: Connection, run_id: str) -> str | None:
    return f"{conn.ui_base}/#/runs/details/{run_id}" if conn.ui_base else None


def submit(conn: Connection, package: Package, params: dict[str, Any], *, experiment: str = "Default",
           run_name: str | None = None, wait: bool = False, timeout: float = 86400.0,
           poll_interval: float = 10.0, upload: bool = False, version_name: str | None = None,
           pipeline_root: str | None = None, service_account: str | None = None) -> RunResult:
    """Create a run of ``package`` in ``experiment`` (created if missing) and optionally wait for its end.

    With ``upload`` the package is first stored as a pipeline version (see :func:`ensure_pipeline_version`) and
    the run refers to it; otherwise the run carries the pipeline spec inline. Raises TimeoutError when ``wait``
    runs out of ``timeout`` seconds.
    """
    experiment_id = _experiment_id(conn, experiment)
    source = _pipeline_source(conn, package, upload, version_name)
    run_name = run_name or f"{package.name} {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    with _quiet():
        run = conn.client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=params,
                                       pipeline_root=pipeline_root, service_account=service_account, **source)
    url = run_url(conn, run.run_id)
    log.info("created run %s in experiment %s: %s", run.run_id, experiment, url or "(no UI address known)")
    state = wait_for_run(conn, run.run_id, timeout, poll_interval) if wait else None
    return RunResult(run_id=run.run_id, url=url, state=state)


def wait_for_run(conn: Connection, run_id: str, timeout: float, poll_interval: float = 10.0) -> str:
    """Poll until the run reaches a terminal state and return it (``SUCCEEDED``, ``FAILED``, ...).

    Unlike kfp.Client.wait_for_run_completion this also ends on ``CANCELED`` and rides out server errors
    (5xx) and dropped connections, which a wait of hours will meet.
    """
    import kfp_server_api
    import urllib3

    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            state = (conn.client.get_run(run_id).state or "").upper()
        except kfp_server_api.ApiException as exc:
            if exc.status is None or exc.status < 500:
                raise
            log.warning("run %s: server error %s while waiting; retrying", run_id, exc.status)
            state = last
        except urllib3.exceptions.HTTPError as exc:
            log.warning("run %s: connection error while waiting (%s); retrying", run_id, exc)
            state = last
        if state != last:
            log.info("run %s: %s", run_id, state)
            last = state
        if state in TERMINAL_STATES:
            return state
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"run {run_id} is still {state or 'unknown'} after {timeout:g} s")
        time.sleep(min(poll_interval, remaining))


# --- cron -----------------------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (name, low, high, names, '?' allowed), in KFP's six-field order.
_CRON_FIELDS = [
    ("second", 0, 59, {}, False),
    ("minute", 0, 59, {}, False),
    ("hour", 0, 23, {}, False),
    ("day of month", 1, 31, {}, True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
]
# robfig/cron descriptors, accepted by KFP as they are.
CRON_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_CRON_ITEM = re.compile(r"(?P<range>\*|\?|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/(?P<step>[0-9]+))?")


class CronError(ValueError):
    """A cron expression KFP would reject or misread; the message names the field."""


def _cron_value(expr: str, fname: str, text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.upper()) if not text.isdigit() else int(text)
    if value is None:
        raise CronError(f"cron {expr!r}: {fname}: {text!r} is not a number or name")
    if not low <= value <= high:
        hint = " (use 0 for Sunday)" if fname == "day of week" and value == 7 else ""
        raise CronError(f"cron {expr!r}: {fname}: {value} is outside {low}-{high}{hint}")
    return value


def _check_cron_field(expr: str, text: str, spec: tuple[str, int, int, dict[str, int], bool]) -> None:
    fname, low, high, names, question_ok = spec
    for item in text.split(","):
        m = _CRON_ITEM.fullmatch(item)
        if not m:
            raise CronError(f"cron {expr!r}: {fname}: cannot read {item!r}")
        rng, step = m.group("range"), m.group("step")
        if step is not None and int(step) == 0:
            raise CronError(f"cron {expr!r}: {fname}: step 0 in {item!r}")
        if rng == "?":
            if not question_ok or step is not None:
                raise CronError(f"cron {expr!r}: {fname}: '?' is allowed only alone in day of month/week")
        elif rng != "*":
            lo_text, _, hi_text = rng.partition("-")
            lo = _cron_value(expr, fname, lo_text, low, high, names)
            if hi_text and _cron_value(expr, fname, hi_text, low, high, names) < lo:
                raise CronError(f"cron {expr!r}: {fname}: range {rng!r} runs backwards")


def to_kfp_cron(expr: str) -> str:
    """Check a cron expression and return it in KFP's six-field form (seconds first).

    Five fields (minute hour day-of-month month day-of-week) get ``0`` seconds prefixed; six fields are taken
    as already having seconds; robfig descriptors such as ``@daily`` pass unchanged. Day of week is 0-6 with 0
    Sunday, or SUN-SAT; months are 1-12 or JAN-DEC.
    """
    text = " ".join(expr.split())
    if text.lower() in CRON_DESCRIPTORS:
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(f"cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
                        f"got {len(fields)}")
    for value, spec in zip(fields, _CRON_FIELDS):
        _check_cron_field(expr, value, spec)
    return " ".join(fields)


def normalize_time(text: str) -> str:
    """ISO 8601 / RFC 3339 time to RFC 3339 UTC (``2025-01-31T02:00:00Z``); a time without zone is UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"time {text!r}: expected ISO 8601, e.g. 2025-01-31T02:00:00Z") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- recurring runs -------------------------------------------------------------------------------------------

def _schedule(rr: Any) -> Schedule:
    cron = rr.trigger.cron_schedule if rr.trigger is not None else None

    def stamp(value: Any) -> str | None:
        return value.isoformat() if isinstance(value, dt.datetime) else value

    status = rr.status or {"ENABLE": "ENABLED", "DISABLE": "DISABLED"}.get(rr.mode or "", "STATUS_UNSPECIFIED")
    return Schedule(recurring_run_id=rr.recurring_run_id, name=rr.display_name or "", status=status,
                    cron=cron.cron if cron else None, max_concurrency=int(rr.max_concurrency or 0),
                    no_catchup=bool(rr.no_catchup), experiment_id=rr.experiment_id,
                    start_time=stamp(cron.start_time) if cron else None,
                    end_time=stamp(cron.end_time) if cron else None)


def check_schedule(cron: str, max_concurrency: int, start_time: str | None = None,
                   end_time: str | None = None) -> tuple[str, str | None, str | None]:
    """Validate a schedule before anything is sent: (KFP cron, RFC 3339 start, RFC 3339 end)."""
    kfp_cron = to_kfp_cron(cron)
    if not 1 <= max_concurrency <= MAX_CONCURRENCY_LIMIT:
        raise ValueError(f"max concurrency {max_concurrency}: must be 1-{MAX_CONCURRENCY_LIMIT}")
    start = normalize_time(start_time) if start_time else None
    end = normalize_time(end_time) if end_time else None
    if start and end and end <= start:
        raise ValueError(f"end time {end} is not after start time {start}")
    return kfp_cron, start, end


def create_schedule(conn: Connection, package: Package, params: dict[str, Any], *, name: str, cron: str,
                    experiment: str = "Default", max_concurrency: int = 1, catchup: bool = False,
                    start_time: str | None = None, end_time: str | None = None, enabled: bool = True,
                    description: str | None = None, upload: bool = False, version_name: str | None = None,
                    pipeline_root: str | None = None, service_account: str | None = None) -> Schedule:
    """Create a cron-triggered recurring run of ``package``.

    No catch-up by default: a schedule paused for a week then resumed starts one run, not seven backfills.
    ``max_concurrency`` bounds overlapping runs (1-10, the API's limit).
    """
    kfp_cron, start, end = check_schedule(cron, max_concurrency, start_time, end_time)
    experiment_id = _experiment_id(conn, experiment)
    source = _pipeline_source(conn, package, upload, version_name)
    with _quiet():
        rr = conn.client.create_recurring_run(
            experiment_id=experiment_id, job_name=name, description=description, start_time=start,
            end_time=end, cron_expression=kfp_cron, max_concurrency=max_concurrency, no_catchup=not catchup,
            params=params, enabled=enabled, pipeline_root=pipeline_root, service_account=service_account,
            **source)
    return _schedule(rr)


def list_schedules(conn: Connection, experiment: str | None = None, page_size: int = 100) -> list[Schedule]:
    """Every recurring run in the namespace, or in one experiment, following all pages."""
    with _quiet():
        experiment_id = (conn.client.get_experiment(experiment_name=experiment, namespace=conn.namespace)
                         .experiment_id if experiment else None)
        out: list[Schedule] = []
        token = ""
        while True:
            page = conn.client.list_recurring_runs(page_token=token, page_size=page_size,
                                                   experiment_id=experiment_id, namespace=conn.namespace)
            out.extend(_schedule(rr) for rr in page.recurring_runs or [])
            token = page.next_page_token or ""
            if not token:
                return out


def get_schedule(conn: Connection, recurring_run_id: str) -> Schedule:
    return _schedule(conn.client.get_recurring_run(recurring_run_id))


def pause_schedule(conn: Connection, recurring_run_id: str) -> Schedule:
    """Stop triggering new runs; runs already started go on."""
    conn.client.disable_recurring_run(recurring_run_id)
    return get_schedule(conn, recurring_run_id)


def resume_schedule(conn: Connection, recurring_run_id: str) -> Schedule:
    conn.client.enable_recurring_run(recurring_run_id)
    return get_schedule(conn, recurring_run_id)


def delete_schedule(conn: Connection, recurring_run_id: str) -> None:
    conn.client.delete_recurring_run(recurring_run_id)
