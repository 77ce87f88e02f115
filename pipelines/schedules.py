"""KFP recurring runs (savflow schedule): create, list, pause, resume, delete, over ``kfp.Client``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
