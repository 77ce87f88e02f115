"""KFP runs (savflow runs): list, get, metrics, cancel, retry, as plain functions over a :class:`Connection`.

Only public ``kfp.Client`` methods are used, plus its generated ``client.runs`` API for retrying (kfp.Client has
no method for ``POST /apis/v2beta1/runs/{id}:retry``) and ``client.get_pipeline_version`` to name the pipeline
of a run that refers to an uploaded version.

The scores of a run (:func:`run_metrics`) are read where its evaluate tasks wrote them, through
:mod:`savflow.common.storage`: both pipelines evaluate into ``{experiment_dir}/eval/{run id}/``
(``experiment_dir`` is a runtime parameter of the run), ``sav-evaluate`` directly there (with ``benchmarks``: into
``{name}/`` for each), ``sav-finetune`` into ``base/`` (the starting checkpoint) and ``finetuned/``; each
evaluation leaves a ``metrics.json``
(:mod:`savflow.evaluate.results`). A run of another pipeline is looked at the same way: ``metrics.json`` in
that folder or in any of its sub-folders.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from savflow.pipelines.kfp_client import Connection, quiet, run_url

# V2beta1RuntimeState values, as the API sends them
RUN_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED", "PAUSED",
              "RUNTIME_STATE_UNSPECIFIED")
# The API server terminates only runs in these states (backend/src/apiserver/storage/run_store.go TerminateRun).
CANCELABLE = frozenset({"PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED", ""})
# Argo retries only a Failed/Error workflow (Workflow.CanRetry); a terminated (canceled) run's workflow is Failed.
RETRYABLE = frozenset({"FAILED", "CANCELED"})
METRICS_JSON = "metrics.json"
# eval folder (relative to {experiment_dir}/eval/{run id}) -> display name of the evaluate task writing there
EVAL_TASKS = {"": "evaluate (evaluation)", "base": "evaluate (starting checkpoint)",
              "finetuned": "evaluate (fine-tuned)"}
PIPELINE_EVAL_FOLDERS = {"sav-evaluate": ("",), "sav-finetune": ("base", "finetuned")}
_EQUALS = 1  # filter.proto Predicate.Operation EQUALS, as kfp.Client itself sends it


class RunError(ValueError):
    """A request that cannot be done as asked (the run is in the wrong state, has no experiment directory)."""


@dataclass(frozen=True)
class RunInfo:
    """What a user checks about a run: what, when, how it ended, with which parameters, its tasks' states."""

    run_id: str
    name: str
    state: str
    experiment_id: str | None
    created_at: str | None
    finished_at: str | None
    pipeline: str | None
    parameters: dict[str, Any]
    error: str | None
    url: str | None
    recurring_run_id: str | None = None
    tasks: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskMetrics:
    """One evaluate task of a run: its scores from ``metrics.json``, or why there are none."""

    task: str
    folder: str
    uri: str
    state: str | None
    jf: float | None = None
    j: float | None = None
    f: float | None = None
    num_videos: int | None = None
    num_objects: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.jf is not None

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "folder": self.folder, "uri": self.uri, "state": self.state, "J&F": self.jf,
                "J": self.j, "F": self.f, "num_videos": self.num_videos, "num_objects": self.num_objects,
                "error": self.error}


@dataclass(frozen=True)
class RunMetrics:
    run: RunInfo
    eval_dir: str
    tasks: list[TaskMetrics]

    @property
    def complete(self) -> bool:
        """The run succeeded and every evaluate task left its scores."""
        return self.run.state == "SUCCEEDED" and bool(self.tasks) and all(t.ok for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run.run_id, "name": self.run.name, "state": self.run.state,
                "pipeline": self.run.pipeline, "eval_dir": self.eval_dir,
                "tasks": [t.to_dict() for t in self.tasks]}


def _stamp(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return None if value.year <= 1970 else value.isoformat()  # the API sends 1970-01-01 for "not yet"
    return value or None


def _spec_name(spec: Any) -> str | None:
    """The pipeline name in a pipeline spec, or in the {pipeline_spec, platform_spec} pair kfp sends."""
    if not isinstance(spec, dict):
        return None
    spec = spec.get("pipeline_spec", spec)
    return (spec.get("pipelineInfo") or {}).get("name") if isinstance(spec, dict) else None


def _pipeline_name(conn: Connection, run: Any, resolve: bool) -> str | None:
    """From the run's inline spec, else (``resolve``) from its pipeline version; None when neither tells (a
    deleted version is no reason to fail)."""
    import kfp_server_api

    name = _spec_name(run.pipeline_spec)
    ref = run.pipeline_version_reference
    if name is None and resolve and ref is not None and ref.pipeline_id and ref.pipeline_version_id:
        try:
            with quiet():
                version = conn.client.get_pipeline_version(ref.pipeline_id, ref.pipeline_version_id)
        except kfp_server_api.ApiException as exc:
            if exc.status is None or exc.status >= 500:
                raise
            return None
        name = _spec_name(version.pipeline_spec) or None
    return name


def _info(conn: Connection, run: Any, *, resolve_pipeline: bool = False) -> RunInfo:
    config = run.runtime_config
    details = run.run_details
    tasks = [{"name": t.display_name or "", "state": (t.state or "").upper()}
             for t in (details.task_details or [])] if details is not None else []
    error = run.error.message if run.error is not None and run.error.message else None
    return RunInfo(run_id=run.run_id, name=run.display_name or "", state=(run.state or "").upper(),
                   experiment_id=run.experiment_id, created_at=_stamp(run.created_at),
                   finished_at=_stamp(run.finished_at), pipeline=_pipeline_name(conn, run, resolve_pipeline),
                   parameters=dict((config.parameters if config is not None else None) or {}), error=error,
                   url=run_url(conn, run.run_id), recurring_run_id=run.recurring_run_id or None, tasks=tasks)


def _state_filter(state: str) -> str:
    return json.dumps({"predicates": [{"operation": _EQUALS, "key": "state", "stringValue": state}]})


def check_state(state: str | None) -> str | None:
    """``state`` upper-cased when it is a run state; a :class:`RunError` naming the states otherwise."""
    if state is None:
        return None
    if state.upper() not in RUN_STATES:
        raise RunError(f"state {state!r}: expected one of {', '.join(RUN_STATES[:-1])}")
    return state.upper()


def list_runs(conn: Connection, experiment: str | None = None, state: str | None = None, *, limit: int = 50,
              page_size: int = 100) -> list[RunInfo]:
    """Runs newest first, in the namespace or in one experiment (by name), optionally in one state; at most
    ``limit`` of them (0: all), following pages. The state is filtered by the API server (``state`` is one of
    the run fields its filters take, backend/src/apiserver/model/run.go)."""
    state = check_state(state)
    with quiet():
        experiment_id = (conn.client.get_experiment(experiment_name=experiment, namespace=conn.namespace)
                         .experiment_id if experiment else None)
        out: list[RunInfo] = []
        token = ""
        while True:
            size = min(page_size, limit - len(out)) if limit else page_size
            page = conn.client.list_runs(page_token=token, page_size=size, sort_by="created_at desc",
                                         experiment_id=experiment_id, namespace=conn.namespace,
                                         filter=_state_filter(state) if state else None)
            out.extend(_info(conn, run) for run in page.runs or [])
            token = page.next_page_token or ""
            if not token or (limit and len(out) >= limit):
                return out[:limit] if limit else out


def get_run(conn: Connection, run_id: str) -> RunInfo:
    """One run, with its pipeline's name (looked up in its pipeline version when it refers to one)."""
    with quiet():
        return _info(conn, conn.client.get_run(run_id), resolve_pipeline=True)


def _benchmark_names(parameters: dict[str, Any]) -> list[str]:
    """The names of a sav-evaluate run's ``benchmarks`` (a list, or its JSON text as some API versions send it)."""
    value = parameters.get("benchmarks")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if not isinstance(value, list):
        return []
    return [b["name"] for b in value if isinstance(b, dict) and isinstance(b.get("name"), str) and b["name"]]


def _eval_folders(eval_dir: str, pipeline: str | None, parameters: dict[str, Any] | None = None) -> list[str]:
    from savflow.common import storage

    names = _benchmark_names(parameters or {}) if pipeline == "sav-evaluate" else []
    if names:
        return names
    if pipeline in PIPELINE_EVAL_FOLDERS:
        return list(PIPELINE_EVAL_FOLDERS[pipeline])
    files, folders = storage.list_children(eval_dir)
    found = [""] if METRICS_JSON in files else []
    return found + sorted(d for d in folders if storage.exists(storage.join(eval_dir, d, METRICS_JSON)))


def _task_metrics(eval_dir: str, folder: str, tasks: list[dict[str, str]], task: str | None = None) -> TaskMetrics:
    from savflow.common import storage

    name = task or EVAL_TASKS.get(folder, f"evaluate ({folder})")
    states = [t["state"] for t in tasks if t["name"] == name]
    state = states[-1] if states else None
    uri = storage.join(eval_dir, folder, METRICS_JSON)
    try:
        scores = json.loads(storage.read_text(uri))
        return TaskMetrics(task=name, folder=folder, uri=uri, state=state, jf=float(scores["J&F"]),
                           j=float(scores["J"]), f=float(scores["F"]), num_videos=scores.get("num_videos"),
                           num_objects=scores.get("num_objects"))
    except storage.NotFoundError:
        return TaskMetrics(task=name, folder=folder, uri=uri, state=state, error="no metrics.json")
    except (ValueError, KeyError, TypeError) as exc:
        return TaskMetrics(task=name, folder=folder, uri=uri, state=state, error=f"unreadable metrics.json: {exc}")


def run_metrics(conn: Connection, run_id: str) -> RunMetrics:
    """J&F, J and F of each evaluate task of the run, from the ``metrics.json`` files under
    ``{experiment_dir}/eval/{run id}/`` (see the module docstring); a task that left none is listed with the
    reason. Storage failures other than a missing file raise :class:`savflow.common.storage.StorageError`."""
    from savflow.common import storage

    info = get_run(conn, run_id)
    experiment_dir = info.parameters.get("experiment_dir")
    if not isinstance(experiment_dir, str) or not experiment_dir:
        raise RunError(f"run {run_id} ({info.pipeline or 'unknown pipeline'}) has no experiment_dir parameter: "
                       "scores are read from {experiment_dir}/eval/{run id}/ of sav-evaluate and sav-finetune runs")
    eval_dir = storage.join(experiment_dir, "eval", run_id)
    # sav-evaluate's evaluate step is one task in a ParallelFor over its benchmarks, whatever the folder
    task = EVAL_TASKS[""] if info.pipeline == "sav-evaluate" else None
    tasks = [_task_metrics(eval_dir, folder, info.tasks, task)
             for folder in _eval_folders(eval_dir, info.pipeline, info.parameters)]
    return RunMetrics(run=info, eval_dir=eval_dir, tasks=tasks)


def cancel_run(conn: Connection, run_id: str) -> tuple[RunInfo, bool]:
    """Ask KFP to terminate the run; returns (the run after the request, whether this call asked). A run already
    canceling or canceled is left alone; one that ended otherwise is a :class:`RunError`."""
    before = get_run(conn, run_id)
    if before.state in ("CANCELING", "CANCELED"):
        return before, False
    if before.state not in CANCELABLE:
        raise RunError(f"run {run_id} already ended {before.state}: nothing to cancel")
    with quiet():
        conn.client.terminate_run(run_id)
    return get_run(conn, run_id), True


def retry_run(conn: Connection, run_id: str) -> RunInfo:
    """Retry a FAILED or CANCELED run in place (same run id: KFP re-runs its failed tasks, the succeeded ones
    keep their outputs); another state is a :class:`RunError`. Returns the run after the request."""
    before = get_run(conn, run_id)
    if before.state not in RETRYABLE:
        raise RunError(f"run {run_id} is {before.state or 'in no state'}: only FAILED or CANCELED runs can be "
                       "retried")
    with quiet():
        conn.client.runs.run_service_retry_run(run_id=run_id)
    return get_run(conn, run_id)
