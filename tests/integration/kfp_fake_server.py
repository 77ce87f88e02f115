"""A local HTTP server that speaks enough of the KFP v2 REST API (``/apis/v2beta1/``) for the real kfp.Client.

There is no official fake of the Kubeflow Pipelines API server, so this one lives in the tests. It keeps
experiments, runs, pipelines with versions and recurring runs in memory, answers with the JSON field names of the
generated ``kfp_server_api`` models (snake_case, except ``recurringRuns`` in the list response, as the real
grpc-gateway sends it), and records every request (method, path, query, decoded body, headers) so a test can
assert on what the client sent.

It checks what the real server checks where a client bug would otherwise pass unnoticed: a run or recurring run
needs an existing experiment and exactly one of an inline ``pipeline_spec`` or a ``pipeline_version_reference``;
a cron trigger needs six fields (seconds first, robfig/cron) or a descriptor; ``max_concurrency`` is 1-10;
experiment names are unique per namespace. Filters support ``EQUALS`` on ``display_name`` (what kfp.Client uses
to get-or-create experiments and find pipelines); anything else is answered 400 so a test notices.

A run starts ``PENDING``, turns ``RUNNING`` on the first GET and ends in :attr:`KfpFakeServer.final_state` after
:attr:`KfpFakeServer.polls_to_finish` GETs, so a client that waits sees the same sequence as on a cluster; with
``final_state=None`` runs never end (to test timeouts). :meth:`KfpFakeServer.finish` ends one at once, with the
task details a test wants.

Runs (paths and response types checked against kfp_server_api/api/run_service_api.py, recurring runs against
recurring_run_service_api.py, the pipeline version GET against pipeline_service_api.py; the server's rules
against the KFP backend, backend/src/apiserver):

* ``GET /runs`` lists by ``experiment_id`` or ``namespace`` (the experiment's), newest first with
  ``sort_by=created_at desc``, filtered by ``EQUALS`` on ``state`` or ``display_name`` (model/run.go maps both);
* ``POST /runs/{id}:terminate`` turns a PENDING, RUNNING or PAUSED run CANCELING (storage/run_store.go
  TerminateRun updates only those, else 400 "Row not found"), and the next GET finds it CANCELED (in a cluster
  the persistence agent reports the terminated workflow);
* ``POST /runs/{id}:retry`` re-runs a FAILED or CANCELED run in place: RUNNING again, same id, then ending like
  a new run; another state is answered 500 as the real server does (resource_manager.go RetryRun: Argo's
  ``CanRetry`` "workflow must be Failed/Error to retry", wrapped as an internal error);
* recurring runs need not have unique display names (model/job.go has no unique index on DisplayName; the
  ScheduledWorkflow is created with GenerateName), and there is no update endpoint.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import itertools
import json
import re
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

PREFIX = "/apis/v2beta1"
# kube-apiserver's service proxy, which kfp.Client uses without a host (sdk/python/kfp/client/client.py
# _KUBE_PROXY_PATH = 'api/v1/namespaces/{}/services/ml-pipeline:http/proxy/'); the client joins it with a '/'.
_KUBE_PROXY = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/ml-pipeline:http/proxy(?P<rest>/.*)$")
_CRON_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received; header names lower-cased (HTTP treats them so; the client sends lower case)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


class ApiError(Exception):
    """Answered as a grpc-gateway error body with the HTTP status and gRPC code of the real server."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> ApiError:
    return ApiError(400, 3, message)  # INVALID_ARGUMENT


def _not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, 5, f"{what} {ident} not found")  # NOT_FOUND


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KfpFakeServer:
    """Thread-based HTTP server on 127.0.0.1 and a free port; use as a context manager or start()/stop().
    ``tls``: (certificate chain PEM, key PEM) to serve HTTPS instead, as a platform's ingress does."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.final_state: str | None = "SUCCEEDED"
        self.polls_to_finish = 2
        self.multi_user = False
        self.requests: list[RecordedRequest] = []
        # namespaces in the service-proxy path of requests that came through it, in order
        self.proxied_namespaces: list[str] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._polls: dict[str, int] = {}
        self._seq = itertools.count()
        self._order: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="kfp-fake", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def start(self) -> KfpFakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> KfpFakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path (after ``/apis/v2beta1``) matches ``path`` exactly."""
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == PREFIX + path]

    # --- request plumbing -------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms a request
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                proxied = _KUBE_PROXY.match(unquote(parts.path))
                if proxied:
                    server.proxied_namespaces.append(proxied["ns"])
                    parts = parts._replace(path=re.sub("^/+", "/", proxied["rest"]))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = _decode_body(self.headers.get("Content-Type", ""), raw)
                query = parse_qs(parts.query, keep_blank_values=True)
                with server._lock:
                    server.requests.append(RecordedRequest(self.command, parts.path, query, body,
                                                           {k.lower(): v for k, v in self.headers.items()}))
                    try:
                        status, payload = 200, server._route(self.command, parts.path, query, body)
                    except ApiError as err:
                        status, payload = err.status, {"error": err.message, "code": err.code,
                                                       "message": err.message, "details": []}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

        return Handler

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        if not path.startswith(PREFIX + "/"):
            raise _not_found("path", path)
        rest = path[len(PREFIX):]
        q = {k: v[-1] for k, v in query.items()}
        routes = [
            ("GET", r"/healthz", lambda: {"multi_user": self.multi_user, "pipeline_store": "database"}),
            ("GET", r"/experiments", lambda: self._list("experiments", self.experiments, q,
                                                        namespaced=True)),
            ("POST", r"/experiments", lambda: self._create_experiment(body)),
            ("GET", r"/experiments/(?P<id>[^/:]+)", lambda id: self._get("experiment", self.experiments, id)),
            ("POST", r"/runs", lambda: self._create_run(body)),
            ("GET", r"/runs", lambda: self._list("runs", self._runs_in(q), q)),
            ("GET", r"/runs/(?P<id>[^/:]+)", lambda id: self._get_run(id)),
            ("POST", r"/runs/(?P<id>[^/:]+):terminate", lambda id: self._terminate_run(id)),
            ("POST", r"/runs/(?P<id>[^/:]+):retry", lambda id: self._retry_run(id)),
            ("GET", r"/pipelines/(?P<pid>[^/:]+)/versions/(?P<vid>[^/:]+)",
             lambda pid, vid: self._get_version(pid, vid)),
            ("GET", r"/pipelines", lambda: self._list("pipelines", self.pipelines, q, namespaced=True)),
            ("POST", r"/pipelines", lambda: self._create_pipeline(body)),
            ("POST", r"/pipelines/upload", lambda: self._upload_pipeline(q, body)),
            ("POST", r"/pipelines/upload_version", lambda: self._upload_version(q, body)),
            ("GET", r"/pipelines/(?P<id>[^/:]+)/versions",
             lambda id: self._list("pipeline_versions", self._versions_of(id), q)),
            ("POST", r"/recurringruns", lambda: self._create_recurring_run(body)),
            ("GET", r"/recurringruns", lambda: self._list("recurringRuns", self._recurring_in(q), q)),
            ("GET", r"/recurringruns/(?P<id>[^/:]+)",
             lambda id: self._get("recurring run", self.recurring_runs, id)),
            ("POST", r"/recurringruns/(?P<id>[^/:]+):enable", lambda id: self._set_mode(id, "ENABLE")),
            ("POST", r"/recurringruns/(?P<id>[^/:]+):disable", lambda id: self._set_mode(id, "DISABLE")),
            ("DELETE", r"/recurringruns/(?P<id>[^/:]+)", lambda id: self._delete_recurring_run(id)),
        ]
        for verb, pattern, handler in routes:
            m = re.fullmatch(pattern, rest)
            if verb == method and m:
                return handler(**m.groupdict())
        raise _not_found("route", f"{method} {path}")

    # --- generic list/get -------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        ident = str(uuid.uuid4())
        self._order[ident] = next(self._seq)
        return ident

    def _get(self, what: str, table: dict[str, dict], ident: str) -> dict:
        if ident not in table:
            raise _not_found(what, ident)
        return table[ident]

    def _list(self, key: str, table: dict[str, dict], q: dict[str, str], namespaced: bool = False) -> dict:
        items = list(table.values())
        if namespaced and q.get("namespace"):
            items = [i for i in items if i.get("namespace", "") == q["namespace"]]
        if q.get("filter"):
            items = _apply_filter(items, q["filter"])
        sort_by = q.get("sort_by", "")
        if sort_by:
            field, _, direction = sort_by.partition(" ")
            if field != "created_at":
                raise _bad(f"fake server sorts only by created_at, not {field!r}")
            items.sort(key=lambda i: self._order[_id_of(i)], reverse=direction.strip() == "desc")
        start = int(q.get("page_token") or 0)
        size = int(q.get("page_size") or 0) or len(items) or 1
        page = items[start:start + size]
        out: dict[str, Any] = {"total_size": len(items)}
        if page:
            out[key] = page
        if start + size < len(items):
            out["next_page_token"] = str(start + size)
        return out

    # --- experiments --------------------------------------------------------------------------------------------

    def _create_experiment(self, body: dict) -> dict:
        name = (body or {}).get("display_name")
        if not name:
            raise _bad("experiment display_name is required")
        namespace = body.get("namespace", "")
        if any(e["display_name"] == name and e.get("namespace", "") == namespace
               for e in self.experiments.values()):
            raise ApiError(409, 6, f"experiment {name!r} already exists")  # ALREADY_EXISTS
        ident = self._new_id()
        self.experiments[ident] = {"experiment_id": ident, "display_name": name,
                                   "description": body.get("description", ""), "namespace": namespace,
                                   "created_at": _now(), "storage_state": "AVAILABLE"}
        return self.experiments[ident]

    # --- runs ---------------------------------------------------------------------------------------------------

    def _check_source(self, body: dict, what: str) -> None:
        if body.get("experiment_id") not in self.experiments:
            raise _bad(f"{what}: experiment {body.get('experiment_id')!r} does not exist")
        has_spec, ref = "pipeline_spec" in body, body.get("pipeline_version_reference")
        if has_spec == bool(ref):
            raise _bad(f"{what}: needs exactly one of pipeline_spec and pipeline_version_reference")
        if ref and ref.get("pipeline_version_id") not in self.versions:
            raise _bad(f"{what}: pipeline version {ref.get('pipeline_version_id')!r} does not exist")

    def _create_run(self, body: dict) -> dict:
        body = body or {}
        self._check_source(body, "run")
        ident = self._new_id()
        run = {**body, "run_id": ident, "state": "PENDING", "created_at": _now(), "storage_state": "AVAILABLE",
               "state_history": [{"update_time": _now(), "state": "PENDING"}]}
        self.runs[ident] = run
        self._polls[ident] = 0
        return run

    def _get_run(self, ident: str) -> dict:
        run = self._get("run", self.runs, ident)
        self._polls[ident] += 1
        if run["state"] == "PENDING":
            self._set_state(run, "RUNNING")
        elif run["state"] == "CANCELING":
            self._set_state(run, "CANCELED")
            run["finished_at"] = _now()
        elif run["state"] == "RUNNING" and self.final_state and self._polls[ident] >= self.polls_to_finish:
            self._set_state(run, self.final_state)
            run["finished_at"] = _now()
        return run

    def _runs_in(self, q: dict[str, str]) -> dict[str, dict]:
        if q.get("experiment_id"):
            return {k: v for k, v in self.runs.items() if v["experiment_id"] == q["experiment_id"]}
        if q.get("namespace"):
            return {k: v for k, v in self.runs.items()
                    if self.experiments[v["experiment_id"]].get("namespace", "") == q["namespace"]}
        return self.runs

    def _terminate_run(self, ident: str) -> dict:
        run = self._get("run", self.runs, ident)
        if run["state"] not in ("PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED"):
            raise _bad(f"Failed to terminate a run {ident}. Row not found")
        self._set_state(run, "CANCELING")
        return {}

    def _retry_run(self, ident: str) -> dict:
        run = self._get("run", self.runs, ident)
        if run["state"] not in ("FAILED", "CANCELED"):
            raise ApiError(500, 13, f"Failed to retry run {ident} as it does not allow reties: workflow must be "
                                    "Failed/Error to retry")  # INTERNAL, the real server's wording
        self._set_state(run, "RUNNING")
        run.pop("finished_at", None)
        self._polls[ident] = 0
        return {}

    def finish(self, ident: str, state: str, tasks: list[tuple[str, str]] = ()) -> dict:
        """End run ``ident`` in ``state`` now, with ``run_details.task_details`` of (display name, state)."""
        with self._lock:
            run = self.runs[ident]
            self._set_state(run, state)
            run["finished_at"] = _now()
            if tasks:
                run["run_details"] = {"task_details": [
                    {"run_id": ident, "task_id": str(uuid.uuid4()), "display_name": name, "state": task_state}
                    for name, task_state in tasks]}
            return run

    @staticmethod
    def _set_state(run: dict, state: str) -> None:
        run["state"] = state
        run["state_history"].append({"update_time": _now(), "state": state})

    # --- pipelines ----------------------------------------------------------------------------------------------

    def _uploaded_spec(self, body: Any) -> Any:
        files = (body or {}).get("files", {})
        if "uploadfile" not in files:
            raise _bad("multipart field 'uploadfile' is required")
        docs = list(yaml.safe_load_all(files["uploadfile"]["content"]))
        if not docs or not isinstance(docs[0], dict) or "pipelineInfo" not in docs[0]:
            raise _bad("uploaded file is not a pipeline spec")
        if len(docs) == 1:
            return docs[0]
        return {"pipeline_spec": docs[0], "platform_spec": docs[1]}

    def _add_version(self, pipeline_id: str, name: str, spec: Any, description: str) -> dict:
        ident = self._new_id()
        self.versions[ident] = {"pipeline_id": pipeline_id, "pipeline_version_id": ident, "display_name": name,
                                "name": name, "description": description, "created_at": _now(),
                                "pipeline_spec": spec}
        return self.versions[ident]

    def _new_pipeline(self, name: str, description: str, namespace: str) -> dict:
        if any(p["display_name"] == name and p.get("namespace", "") == namespace for p in self.pipelines.values()):
            raise ApiError(409, 6, f"pipeline {name!r} already exists")
        ident = self._new_id()
        self.pipelines[ident] = {"pipeline_id": ident, "display_name": name, "name": name,
                                 "description": description, "namespace": namespace, "created_at": _now()}
        return self.pipelines[ident]

    def _create_pipeline(self, body: dict) -> dict:
        """v2beta1 CreatePipeline: the pipeline only, no version."""
        name = (body or {}).get("display_name")
        if not name:
            raise _bad("pipeline display_name is required")
        return self._new_pipeline(name, body.get("description", ""), body.get("namespace", ""))

    def _upload_pipeline(self, q: dict[str, str], body: Any) -> dict:
        """Upload: a pipeline and its first version, both named like the pipeline."""
        spec = self._uploaded_spec(body)
        name = q.get("display_name") or q.get("name") or body["files"]["uploadfile"]["filename"]
        pipeline = self._new_pipeline(name, q.get("description", ""), q.get("namespace", ""))
        self._add_version(pipeline["pipeline_id"], name, spec, q.get("description", ""))
        return pipeline

    def _upload_version(self, q: dict[str, str], body: Any) -> dict:
        pipeline_id = q.get("pipelineid", "")
        if pipeline_id not in self.pipelines:
            raise _bad(f"pipeline {pipeline_id!r} does not exist")
        name = q.get("display_name") or q.get("name")
        if not name:
            raise _bad("pipeline version name is required")
        if any(v["display_name"] == name for v in self._versions_of(pipeline_id).values()):
            raise ApiError(409, 6, f"pipeline version {name!r} already exists")
        return self._add_version(pipeline_id, name, self._uploaded_spec(body), q.get("description", ""))

    def _get_version(self, pipeline_id: str, version_id: str) -> dict:
        return self._get("pipeline version", self._versions_of(pipeline_id), version_id)

    def _versions_of(self, pipeline_id: str) -> dict[str, dict]:
        if pipeline_id not in self.pipelines:
            raise _not_found("pipeline", pipeline_id)
        return {k: v for k, v in self.versions.items() if v["pipeline_id"] == pipeline_id}

    # --- recurring runs -----------------------------------------------------------------------------------------

    def _create_recurring_run(self, body: dict) -> dict:
        body = body or {}
        self._check_source(body, "recurring run")
        trigger = body.get("trigger") or {}
        if ("cron_schedule" in trigger) == ("periodic_schedule" in trigger):
            raise _bad("recurring run: trigger needs exactly one of cron_schedule and periodic_schedule")
        if "cron_schedule" in trigger:
            cron = trigger["cron_schedule"].get("cron", "")
            if cron not in _CRON_DESCRIPTORS and len(cron.split()) != 6:
                raise _bad(f"recurring run: cron {cron!r} must have 6 fields (seconds first)")
        max_concurrency = int(body.get("max_concurrency", 1))
        if not 1 <= max_concurrency <= 10:
            raise _bad(f"recurring run: max_concurrency {max_concurrency} must be 1-10")
        if body.get("mode") not in ("ENABLE", "DISABLE"):
            raise _bad(f"recurring run: mode {body.get('mode')!r} must be ENABLE or DISABLE")
        ident = self._new_id()
        namespace = self.experiments[body["experiment_id"]].get("namespace", "")
        rr = {**body, "recurring_run_id": ident, "max_concurrency": str(max_concurrency), "namespace": namespace,
              "created_at": _now(), "updated_at": _now(),
              "status": "ENABLED" if body["mode"] == "ENABLE" else "DISABLED"}
        self.recurring_runs[ident] = rr
        return rr

    def _recurring_in(self, q: dict[str, str]) -> dict[str, dict]:
        if q.get("experiment_id"):
            return {k: v for k, v in self.recurring_runs.items() if v["experiment_id"] == q["experiment_id"]}
        if q.get("namespace"):
            return {k: v for k, v in self.recurring_runs.items() if v["namespace"] == q["namespace"]}
        return self.recurring_runs

    def _set_mode(self, ident: str, mode: str) -> dict:
        rr = self._get("recurring run", self.recurring_runs, ident)
        rr.update(mode=mode, status="ENABLED" if mode == "ENABLE" else "DISABLED", updated_at=_now())
        return {}

    def _delete_recurring_run(self, ident: str) -> dict:
        self._get("recurring run", self.recurring_runs, ident)
        del self.recurring_runs[ident]
        return {}


def _id_of(item: dict) -> str:
    for key in ("pipeline_version_id", "recurring_run_id", "run_id", "experiment_id", "pipeline_id"):
        if key in item:
            return item[key]
    raise KeyError("item without an id")


def _apply_filter(items: list[dict], text: str) -> list[dict]:
    try:
        predicates = json.loads(text).get("predicates", [])
    except (json.JSONDecodeError, AttributeError) as exc:
        raise _bad(f"filter {text!r} is not a JSON Filter") from exc
    for p in predicates:
        if p.get("operation") not in (1, "EQUALS"):
            raise _bad(f"fake server supports only EQUALS filters, got {p.get('operation')!r}")
        value = p.get("stringValue", p.get("string_value"))
        items = [i for i in items if i.get(p.get("key")) == value]
    return items


def _decode_body(content_type: str, raw: bytes) -> Any:
    """JSON bodies as objects; multipart uploads as {"fields": {...}, "files": {name: {filename, content}}}."""
    if not raw:
        return None
    if content_type.startswith("application/json"):
        return json.loads(raw)
    if content_type.startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        out: dict[str, dict] = {"fields": {}, "files": {}}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                out["files"][name] = {"filename": part.get_filename(), "content": payload.decode()}
            else:
                out["fields"][name] = payload.decode()
        return out
    return raw.decode(errors="replace")
