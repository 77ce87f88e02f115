"""KFP recurring runs (savflow schedule): create, list, pause, resume, update, delete, over ``kfp.Client``.

KFP cannot change a recurring run: the v2beta1 RecurringRunService has Create, Get, List, Enable, Disable and
Delete only (kfp_server_api/api/recurring_run_service_api.py), so :func:`update_schedule` replaces one by a
new one with the same name and settings, changed where asked. Display names need not be unique (the API
server's Job model has no unique index on DisplayName, and its ScheduledWorkflow is created with
GenerateName), so the order is: create the new one *disabled*, delete the old one, then enable the new one.
Each step failing leaves a state that still triggers at most once per interval and is reported with what to
do: before the first nothing changed; after it both exist and only the old one triggers; after the second the
new one exists disabled (``savflow schedule resume ID``). The new one has a new id.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from savflow.pipelines.cron import normalize_time, to_kfp_cron
from savflow.pipelines.kfp_client import Connection, Package, experiment_id_of, pipeline_source, quiet

MAX_CONCURRENCY_LIMIT = 10  # the KFP API server rejects recurring runs above this


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


def check_schedule(cron: str | None, max_concurrency: int, start_time: str | None = None,
                   end_time: str | None = None) -> tuple[str | None, str | None, str | None]:
    """Validate a schedule before anything is sent: (KFP cron, RFC 3339 start, RFC 3339 end); no cron (a
    periodic trigger) gives None for it."""
    kfp_cron = to_kfp_cron(cron) if cron is not None else None
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
    experiment_id = experiment_id_of(conn, experiment)
    source = pipeline_source(conn, package, upload, version_name)
    with quiet():
        rr = conn.client.create_recurring_run(
            experiment_id=experiment_id, job_name=name, description=description, start_time=start,
            end_time=end, cron_expression=kfp_cron, max_concurrency=max_concurrency, no_catchup=not catchup,
            params=params, enabled=enabled, pipeline_root=pipeline_root, service_account=service_account,
            **source)
    return _schedule(rr)


def list_schedules(conn: Connection, experiment: str | None = None, page_size: int = 100) -> list[Schedule]:
    """Every recurring run in the namespace, or in one experiment, following all pages."""
    with quiet():
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


class UpdateError(RuntimeError):
    """A replacement that stopped half-way; the message says which recurring runs exist now and what to do."""


@dataclass(frozen=True)
class Replacement:
    """The outcome of :func:`update_schedule`: the old id, the new recurring run, and the old parameters left
    out because the new pipeline does not declare them."""

    old_id: str
    schedule: Schedule
    dropped_params: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"replaced": self.old_id, **self.schedule.to_dict(), "dropped_params": self.dropped_params}


def declared_types(spec: Any) -> dict[str, str] | None:
    """Root parameter types of a pipeline spec (or of kfp's {pipeline_spec, platform_spec} pair), or None."""
    if not isinstance(spec, dict):
        return None
    spec = spec.get("pipeline_spec", spec)
    if not isinstance(spec, dict) or "root" not in spec:
        return None
    params = (spec["root"].get("inputDefinitions") or {}).get("parameters") or {}
    return {k: v.get("parameterType", "") for k, v in params.items()}


def _write_spec(spec: dict[str, Any], workdir: str) -> str:
    """A recurring run's inline spec as a package file again (two documents when it has a platform spec)."""
    path = Path(workdir) / "pipeline.yaml"
    if "pipeline_spec" in spec:
        docs = [spec["pipeline_spec"], *([spec["platform_spec"]] if spec.get("platform_spec") else [])]
    else:
        docs = [spec]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def update_schedule(conn: Connection, recurring_run_id: str, *, package: Package | None = None,
                    file_params: Mapping[str, Any] | None = None, cli_params: Mapping[str, str] | None = None,
                    name: str | None = None, cron: str | None = None, max_concurrency: int | None = None,
                    catchup: bool | None = None, start_time: str | None = None, end_time: str | None = None,
                    enabled: bool | None = None, description: str | None = None, upload: bool = False,
                    version_name: str | None = None, pipeline_root: str | None = None,
                    service_account: str | None = None) -> Replacement:
    """Replace a recurring run by one with its settings, changed where an argument is given (None: keep; an
    empty ``start_time``/``end_time``: none). ``package``: run this pipeline instead (old parameters it does not
    declare are dropped); parameters (``file_params``, ``cli_params`` as raw ``--param`` text, the latter
    winning) are typed by the pipeline's declared inputs and merged over the old ones. Everything is checked
    before anything changes; the order of the changes is in the module docstring."""
    from savflow.pipelines import params as params_mod

    with quiet():
        old = conn.client.get_recurring_run(recurring_run_id)
    trigger = old.trigger
    cron_schedule = trigger.cron_schedule if trigger is not None else None
    periodic = trigger.periodic_schedule if trigger is not None else None
    current = cron_schedule or periodic
    if cron is None and cron_schedule is None and (periodic is None or not periodic.interval_second):
        raise ValueError(f"recurring run {recurring_run_id} has no trigger to keep: give --cron")
    interval = int(periodic.interval_second) if cron is None and cron_schedule is None else None

    def stamp(value: Any) -> str | None:
        value = value.isoformat() if isinstance(value, dt.datetime) else value
        return value or None

    start = stamp(current.start_time) if start_time is None and current is not None else (start_time or None)
    end = stamp(current.end_time) if end_time is None and current is not None else (end_time or None)
    concurrency = max_concurrency if max_concurrency is not None else int(old.max_concurrency or 1)
    kfp_cron, start, end = check_schedule(cron or (cron_schedule.cron if interval is None else None), concurrency,
                                          start, end)

    old_params = dict((old.runtime_config.parameters if old.runtime_config is not None else None) or {})
    ref = old.pipeline_version_reference
    dropped: list[str] = []
    if package is not None:
        declared: dict[str, str] | None = package.parameter_types
        dropped = sorted(k for k in old_params if k not in package.parameter_types)
        old_params = {k: v for k, v in old_params.items() if k not in dropped}
    elif ref is not None and ref.pipeline_version_id:
        with quiet():
            version = conn.client.get_pipeline_version(ref.pipeline_id, ref.pipeline_version_id)
        declared = declared_types(version.pipeline_spec)
    else:
        declared = declared_types(old.pipeline_spec)
    new_params = params_mod.resolve_params(file_params or {}, cli_params or {}, declared)
    was_enabled = (old.mode or "") == "ENABLE" or (old.status or "") == "ENABLED"
    target_enabled = was_enabled if enabled is None else enabled

    with tempfile.TemporaryDirectory(prefix="savflow-schedule-update-") as workdir:
        if package is not None:
            source = pipeline_source(conn, package, upload, version_name)
        elif ref is not None and ref.pipeline_version_id:
            source = {"pipeline_id": ref.pipeline_id, "version_id": ref.pipeline_version_id}
        elif isinstance(old.pipeline_spec, dict):
            source = {"pipeline_package_path": _write_spec(old.pipeline_spec, workdir)}
        else:
            raise ValueError(f"recurring run {recurring_run_id} has neither a pipeline spec nor a pipeline "
                             "version: give --pipeline")
        root = pipeline_root or (old.runtime_config.pipeline_root if old.runtime_config is not None else None)
        with quiet():
            created = conn.client.create_recurring_run(
                experiment_id=old.experiment_id, job_name=name or old.display_name,
                description=old.description if description is None else description, start_time=start,
                end_time=end, cron_expression=kfp_cron, interval_second=interval, max_concurrency=concurrency,
                no_catchup=bool(old.no_catchup) if catchup is None else not catchup,
                params={**old_params, **new_params}, enabled=False, pipeline_root=root or None,
                service_account=service_account or old.service_account or None, **source)
    new_id = created.recurring_run_id
    try:
        delete_schedule(conn, recurring_run_id)
    except Exception as exc:  # noqa: BLE001 - whatever failed, the user must learn that two now exist
        raise UpdateError(f"created {new_id} (disabled) to replace {recurring_run_id}, but deleting "
                          f"{recurring_run_id} failed ({_short(exc)}); both exist: delete {new_id} to keep the old "
                          f"one, or delete {recurring_run_id} and resume {new_id}") from exc
    if target_enabled:
        try:
            with quiet():
                conn.client.enable_recurring_run(new_id)
        except Exception as exc:  # noqa: BLE001
            raise UpdateError(f"replaced {recurring_run_id} by {new_id}, but enabling {new_id} failed "
                              f"({_short(exc)}): run `savflow schedule resume {new_id}`") from exc
    return Replacement(old_id=recurring_run_id, schedule=get_schedule(conn, new_id), dropped_params=dropped)


def _short(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    text = str(getattr(exc, "reason", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{status} {text}" if status else text
