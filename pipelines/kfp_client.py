"""The Kubeflow Pipelines verbs (submit a run, manage recurring runs) as plain functions over ``kfp.Client``.

Each verb takes a :class:`Connection` made by :func:`connect` and returns what the CLI's ``submit`` and
``schedule`` subcommands print, so scripts and tests can call them without argv. Only public ``kfp.Client``
methods are used, plus its generated ``client.pipelines`` API for the one call it has no method for.

Recurring runs are :mod:`savflow.pipelines.schedules`, their cron expressions :mod:`savflow.pipelines.cron`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
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
COOKIES_ENV = "KF_PIPELINES_COOKIES"
CA_CERT_ENV = "KF_PIPELINES_CA_CERT"
# Where a standard Kubeflow install runs the KFP API server (kfp.Client's own default).
DEFAULT_KFP_NAMESPACE = "kubeflow"
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
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
            ui_host: str | None = None, kfp_namespace: str = DEFAULT_KFP_NAMESPACE,
            cookies: str | None = None, ca_cert: str | None = None) -> Connection:
    """Make a ``kfp.Client``.

    Two namespaces, which kfp.Client's constructor conflates: ``kfp_namespace`` is where Kubeflow Pipelines is
    installed, used only to find the API without ``host`` (``ml-pipeline.{kfp_namespace}.svc`` in a pod, or the
    kubeconfig's API-server proxy to that service); ``namespace`` is the user's profile namespace on a
    multi-user install, sent with every request (experiments, runs, recurring runs). Passing the profile
    namespace to the constructor, as kfp's docs suggest, makes it look for the API server in the profile
    namespace (sdk/python/kfp/client/client.py, ``_load_config``: ``_IN_CLUSTER_DNS_NAME.format(namespace)`` and
    ``_KUBE_PROXY_PATH.format(namespace)``).

    Credentials (masked in this process's logs from here on, :mod:`savflow.common.secrets`), first that
    applies: ``token`` (else ``$KF_PIPELINES_TOKEN``) as a bearer token; a projected service-account token file
    ``sa_token_path`` (re-read on every request, as the kubelet rotates it); else whatever kfp.Client finds itself
    (IAP client id from ``$KF_PIPELINES_IAP_OAUTH2_CLIENT_ID``, the in-cluster config, or the kubeconfig's
    API-server proxy when no host is given). With any of them, ``cookies`` (else
    ``$KF_PIPELINES_COOKIES``): the session cookies of a Kubeflow Platform login, for the API behind the
    platform's ingress from outside the cluster (``name=value``, several joined by ``; ``, e.g. oauth2-proxy's
    ``oauth2_proxy_kubeflow``), which kfp.Client sends as the ``Cookie`` header of every request (client.py:
    ``kfp_server_api.ApiClient(config, cookie=cookies)``; without them it takes ``client_authentication_cookie``
    from its ``~/.config/kfp/context.json``).

    ``ca_cert`` (else ``$KF_PIPELINES_CA_CERT``): a PEM file of the CA that signed the endpoint's TLS certificate
    (an internal CA); kfp.Client sets it as its configuration's ``ssl_ca_cert`` (client.py ``_load_config``),
    the only CAs it then trusts. Without it, the CAs bundled with the client (certifi).
    """
    from kfp.client import ServiceAccountTokenVolumeCredentials

    from savflow.common import secrets

    token = token or os.environ.get(TOKEN_ENV) or None
    cookies = cookies or os.environ.get(COOKIES_ENV) or None
    # masked from now on, however they came (a flag, or a variable whose name does not say secret)
    for secret in (token, cookies, *(c.partition("=")[2].strip() for c in (cookies or "").split(";"))):
        secrets.add_secret(secret)
    ca_cert = ca_cert or os.environ.get(CA_CERT_ENV) or None
    credentials = ServiceAccountTokenVolumeCredentials(sa_token_path) if sa_token_path and not token else None
    host = host or os.environ.get("KF_PIPELINES_ENDPOINT") or None
    kfp_namespace = kfp_namespace or DEFAULT_KFP_NAMESPACE
    # With a host the constructor's namespace only sets the user's (and a given one skips the multi-user
    # healthz probe); without one it is where the constructor looks for the API.
    constructor_namespace = (namespace or DEFAULT_KFP_NAMESPACE) if host else kfp_namespace
    with warnings.catch_warnings(), quiet():
        warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline",
                                category=FutureWarning)
        client = _client_class()(host=host, namespace=constructor_namespace, existing_token=token,
                                 credentials=credentials, kube_context=kube_context, ui_host=ui_host,
                                 cookies=cookies, ssl_ca_cert=ca_cert)
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
    with quiet():
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


def pipeline_source(conn: Connection, package: Package, upload: bool, version_name: str | None) -> dict[str, Any]:
    if not upload:
        return {"pipeline_package_path": str(package.path)}
    pipeline_id, version_id = ensure_pipeline_version(conn, package, version_name)
    return {"pipeline_id": pipeline_id, "version_id": version_id}


def experiment_id_of(conn: Connection, experiment: str) -> str:
    """Get or create the experiment by name (kfp.Client.create_experiment looks it up first)."""
    with quiet():
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
    experiment_id = experiment_id_of(conn, experiment)
    source = pipeline_source(conn, package, upload, version_name)
    run_name = run_name or f"{package.name} {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    with quiet():
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
