"""Run a training job to its end: on a cluster as a PyTorchJob (or TrainJob), or here with ``torchrun``.

:func:`launch` is what the pipeline's train step and ``savflow launch-train`` call. It creates the job through
the ``kubernetes`` client, then polls (no watch, so any API server or proxy works) until the job reaches a
terminal condition or the overall timeout, writing each new status condition, each new Kubernetes event of the
job or its master pod, and each new log line of the master pod to ``emit`` (the step's log). It returns only
when the job succeeded; anything else raises with the reason:

* a job whose ``Failed`` condition is set raises :class:`JobFailed` carrying the condition's reason and message;
* a step retried with the same job name adopts the job already there (same spec, checked by a hash annotation)
  instead of creating a second one; ``replace_failed=True`` deletes a failed one and starts afresh instead
  (training itself resumes from its last checkpoint with ``--resume auto``);
* cancellation (SIGTERM from a cancelled pipeline run, or Ctrl-C) and the overall timeout delete the job, so no
  GPUs stay held by a run nobody waits for;
* finished jobs are removed by the operator after ``runPolicy.ttlSecondsAfterFinished``.

Without a cluster, :func:`run_local` runs the same worker from the same :class:`TrainJobSpec` with ``torchrun
--standalone`` on this machine, streaming its output the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from savflow.common import platforms, secrets
from savflow.common.kube import current_namespace, load_api_client, read_crd
from savflow.launch import pytorchjob, trainjob
from savflow.train import torchrun
from savflow.launch.jobspec import TrainJobSpec

SPEC_HASH_ANNOTATION = "savflow/spec-hash"
Emit = Callable[[str], None]


class LaunchError(RuntimeError):
    """The job could not be run to an outcome (name taken by a different job, job vanished, timeout)."""


class JobFailed(LaunchError):
    """The job ran and failed; ``reason`` is the operator's (or the exit status) and ``message`` the detail."""

    def __init__(self, name: str, reason: str, message: str) -> None:
        super().__init__(f"training job {name} failed: {reason}: {message}")
        self.name, self.reason, self.message = name, reason, message


class LaunchCancelled(BaseException):
    """SIGTERM arrived while waiting; a BaseException so that no ``except Exception`` swallows it."""


@dataclass(frozen=True)
class JobKind:
    """How one kind of training job is addressed, rendered and judged, so one loop serves both backends."""

    group: str
    version: str
    plural: str
    render: Callable[[TrainJobSpec, str, str], dict[str, Any]]
    succeeded: str
    failed: str
    container: str
    master_selector: Callable[[str], str]
    platform: platforms.Platform
    check_crd: Callable[[dict[str, Any]], str | None]

    @property
    def crd(self) -> str:
        return f"{self.plural}.{self.group}"


PYTORCHJOB = JobKind(
    group="kubeflow.org", version="v1", plural="pytorchjobs", render=pytorchjob.render_pytorchjob,
    succeeded="Succeeded", failed="Failed", container=pytorchjob.CONTAINER,
    master_selector=lambda name: (f"training.kubeflow.org/job-name={name},"
                                  "training.kubeflow.org/replica-type=master,training.kubeflow.org/replica-index=0"),
    platform=platforms.TRAINING_OPERATOR, check_crd=platforms.crd_release,
)
TRAINJOB = JobKind(
    group="trainer.kubeflow.org", version="v1alpha1", plural="trainjobs", render=trainjob.render_trainjob,
    succeeded="Complete", failed="Failed", container=trainjob.NODE,
    master_selector=lambda name: (f"jobset.sigs.k8s.io/jobset-name={name},"
                                  f"jobset.sigs.k8s.io/replicatedjob-name={trainjob.NODE},"
                                  "jobset.sigs.k8s.io/job-index=0,batch.kubernetes.io/job-completion-index=0"),
    platform=platforms.TRAINER, check_crd=platforms.check_trainjob_crd,
)
KINDS = {"pytorchjob": PYTORCHJOB, "trainjob": TRAINJOB}


@dataclass(frozen=True)
class Outcome:
    """A job that succeeded: whether it was adopted from an earlier attempt, and how long we waited."""

    name: str
    namespace: str
    adopted: bool
    seconds: float


def spec_hash(body: dict[str, Any]) -> str:
    """A digest of the job's spec: an existing job is adopted only when it runs exactly what we would create."""
    return hashlib.sha256(json.dumps(body["spec"], sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`LaunchCancelled` while waiting (signals can only be handled in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise LaunchCancelled(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse_timestamp(stamp: str) -> tuple[int, int]:
    """RFC 3339 with nanoseconds, as the kubelet prefixes log lines, to (epoch seconds, nanoseconds).

    The kubelet trims trailing zeros of the fraction, so the strings do not sort as text.
    """
    from datetime import datetime

    main, _, frac = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(main + "+00:00").timestamp())
    return seconds, int((frac + "000000000")[:9])


@dataclass
class _LogTail:
    """New lines of one pod's container log, by polling with timestamps and an overlapping time window."""

    pod: str
    container: str
    last: tuple[int, int] | None = None
    seen_at_last: set[str] = field(default_factory=set)
    last_poll: float = 0.0

    def poll(self, core: Any, namespace: str) -> list[str]:
        from kubernetes.client import ApiException

        since = None if self.last is None else math.ceil(time.monotonic() - self.last_poll) + 10
        try:
            response = core.read_namespaced_pod_log(self.pod, namespace, container=self.container, timestamps=True,
                                                    since_seconds=since, _preload_content=False)
        except ApiException as exc:
            if exc.status in (400, 404):  # container not started yet, or the pod is gone
                return []
            raise
        self.last_poll = time.monotonic()
        lines = []
        for raw in response.data.decode("utf-8", errors="replace").splitlines():
            stamp, _, text = raw.partition(" ")
            try:
                when = _parse_timestamp(stamp)
            except ValueError:
                continue
            if self.last is not None and (when < self.last or (when == self.last and raw in self.seen_at_last)):
                continue
            if when != self.last:
                self.last, self.seen_at_last = when, set()
            self.seen_at_last.add(raw)
            lines.append(text)
        return lines


@dataclass
class _Watcher:
    """Everything already reported about one job, so each poll emits only what changed."""

    kind: JobKind
    name: str
    namespace: str
    emit: Emit
    conditions: set[tuple[str, str, str, str]] = field(default_factory=set)
    replicas: str = ""
    events: set[tuple[str, int]] = field(default_factory=set)
    tail: _LogTail | None = None

    def report_status(self, job: dict[str, Any]) -> None:
        status = job.get("status") or {}
        for cond in status.get("conditions") or []:
            key = (cond.get("type", ""), cond.get("status", ""), cond.get("reason", ""),
                   cond.get("lastTransitionTime", ""))
            if key not in self.conditions:
                self.conditions.add(key)
                self.emit(f"[{self.name}] condition {key[0]}={key[1]} ({key[2]}): {cond.get('message', '')}")
        replicas = json.dumps(status.get("replicaStatuses") or {}, sort_keys=True)
        if replicas != self.replicas and replicas != "{}":
            self.replicas = replicas
            self.emit(f"[{self.name}] replicas {replicas}")

    def report_events(self, core: Any, pod: str | None) -> None:
        for involved in filter(None, (self.name, pod)):
            found = core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={involved}")
            for event in found.items:
                key = (event.metadata.name, event.count or 1)
                if key not in self.events:
                    self.events.add(key)
                    obj = event.involved_object
                    self.emit(f"[{self.name}] event {event.type} {obj.kind}/{obj.name} {event.reason}: "
                              f"{event.message}")

    def master_pod(self, core: Any) -> str | None:
        pods = core.list_namespaced_pod(self.namespace, label_selector=self.kind.master_selector(self.name)).items
        if not pods:
            return None
        newest = max(pods, key=lambda p: p.metadata.creation_timestamp.timestamp() if p.metadata.creation_timestamp
                     else 0.0)
        return newest.metadata.name

    def report_logs(self, core: Any, pod: str | None) -> None:
        if pod is None:
            return
        if self.tail is None or self.tail.pod != pod:
            self.tail = _LogTail(pod, self.kind.container)
        for line in self.tail.poll(core, self.namespace):
            self.emit(f"[{pod}] {line}")

    def outcome(self, job: dict[str, Any]) -> tuple[bool, str, str] | None:
        """(succeeded, reason, message) once a terminal condition is true, else None."""
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") in (self.kind.succeeded, self.kind.failed):
                return cond["type"] == self.kind.succeeded, cond.get("reason", ""), cond.get("message", "")
        return None


def launch(
    spec: TrainJobSpec,
    name: str,
    *,
    namespace: str | None = None,
    kind: JobKind = PYTORCHJOB,
    api_client: Any = None,
    timeout_s: float = 7 * 24 * 3600,
    poll_s: float = 10.0,
    replace_failed: bool = False,
    emit: Emit = print,
) -> Outcome:
    """Create (or adopt) the job ``name`` for ``spec`` and wait for its outcome; see the module docstring."""
    from kubernetes import client

    emit = secrets.masking(emit, extra=spec.env)  # pod logs and events: the job's secrets and this process's

    api_client = api_client or load_api_client()
    namespace = namespace or current_namespace()
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    body = kind.render(spec, name, namespace)
    body["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(body)
    address = (kind.group, kind.version, namespace, kind.plural)
    watcher = _Watcher(kind, name, namespace, emit)
    started = time.monotonic()
    release = installed_release(api_client, kind)
    emit(f"[{name}] {kind.platform.name} {release or '(release not told by its CRD)'} is installed")
    with _sigterm_raises():
        try:
            adopted = _create_or_adopt(custom, address, body, watcher, replace_failed)
            while True:
                result = _poll(custom, core, address, watcher)
                if result is not None:
                    succeeded, reason, message = result
                    if not succeeded:
                        raise JobFailed(name, reason, secrets.mask(message, extra=spec.env))
                    emit(f"[{name}] succeeded after {time.monotonic() - started:.0f} s")
                    return Outcome(name, namespace, adopted, time.monotonic() - started)
                if time.monotonic() - started > timeout_s:
                    _delete(custom, address, name, emit, f"no outcome within {timeout_s:.0f} s")
                    raise LaunchError(f"training job {namespace}/{name} did not finish within {timeout_s:.0f} s; "
                                      "deleted it")
                time.sleep(poll_s)
        except (KeyboardInterrupt, LaunchCancelled):
            _delete(custom, address, name, emit, "the launch was cancelled")
            raise


def _poll(custom: Any, core: Any, address: tuple[str, str, str, str],
          watcher: _Watcher) -> tuple[bool, str, str] | None:
    """One look at the job: report what is new, return its outcome once there is one.

    Server errors and dropped connections are reported and retried at the next poll: the job runs on without
    us, and a launcher that gave up on a 503 would leave a training run nobody watches.
    """
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    try:
        job = _get(custom, address, watcher.name)
        if job is None:
            raise LaunchError(f"training job {watcher.namespace}/{watcher.name} disappeared while running "
                              "(deleted by someone else, or its TTL ran out)")
        watcher.report_status(job)
        pod = watcher.master_pod(core)
        watcher.report_events(core, pod)
        watcher.report_logs(core, pod)
        return watcher.outcome(job)
    except ApiException as exc:
        if exc.status is None or (exc.status < 500 and exc.status != 429):
            raise
        watcher.emit(f"[{watcher.name}] API error {exc.status} {exc.reason}; retrying")
    except HTTPError as exc:
        watcher.emit(f"[{watcher.name}] API connection error {exc}; retrying")
    return None


def _get(custom: Any, address: tuple[str, str, str, str], name: str) -> dict[str, Any] | None:
    from kubernetes.client import ApiException

    try:
        return custom.get_namespaced_custom_object(*address, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _delete(custom: Any, address: tuple[str, str, str, str], name: str, emit: Emit, why: str) -> None:
    from kubernetes import client
    from kubernetes.client import ApiException

    emit(f"[{name}] deleting the job: {why}")
    try:
        custom.delete_namespaced_custom_object(*address, name,
                                               body=client.V1DeleteOptions(propagation_policy="Background"))
    except ApiException as exc:
        if exc.status != 404:
            raise


def installed_release(api_client: Any, kind: JobKind) -> str | None:
    """The release line of ``kind``'s platform as its CRD shows it; :class:`LaunchError` when it is missing,
    unreadable or a release we refuse (see :mod:`savflow.common.platforms`), before anything is created."""
    from kubernetes.client import ApiException

    try:
        crd = read_crd(api_client, kind.crd)
    except ApiException as exc:
        if exc.status == 403:
            raise LaunchError(f"cannot read the CRD {kind.crd} to check which {kind.platform.name} is installed "
                              "(forbidden): bind the ClusterRole savflow-preflight of k8s/base/rbac to this "
                              "service account") from None
        raise
    if crd is None:
        raise LaunchError(f"{kind.platform.name} is not installed: the cluster has no CRD {kind.crd}")
    try:
        return kind.check_crd(crd)
    except platforms.UnsupportedPlatform as exc:
        raise LaunchError(str(exc)) from None


def _create(custom: Any, address: tuple[str, str, str, str], body: dict[str, Any]) -> None:
    """Create with strict field validation: a field this release of the operator does not know fails the
    create with the field named, where the default (Warn) would drop it silently."""
    from kubernetes.client import ApiException

    try:
        custom.create_namespaced_custom_object(*address, body, field_validation="Strict")
    except ApiException as exc:
        if exc.status == 400 and "unknown field" in str(exc.body):
            raise LaunchError(f"the installed operator does not know fields savflow sets on a {body['kind']}: "
                              f"{_status_message(exc)}") from None
        raise


def _status_message(exc: Any) -> str:
    import json as _json

    try:
        return _json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.body)


def _create_or_adopt(custom: Any, address: tuple[str, str, str, str], body: dict[str, Any], watcher: _Watcher,
                     replace_failed: bool) -> bool:
    """Create the job; when the name is taken by the same spec, adopt it (True). Raise when it is not ours."""
    from kubernetes.client import ApiException

    name, want = body["metadata"]["name"], body["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    try:
        _create(custom, address, body)
        watcher.emit(f"[{name}] created {body['kind']} {watcher.namespace}/{name}")
        return False
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = _get(custom, address, name)
    if existing is None:  # deleted between our create and get: try once more
        _create(custom, address, body)
        return False
    have = ((existing.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if have != want:
        raise LaunchError(f"a {body['kind']} named {name} already exists in {watcher.namespace} with a different "
                          f"spec (hash {have}, ours {want}); choose another name or delete it")
    result = watcher.outcome(existing)
    if replace_failed and result is not None and not result[0]:
        _delete(custom, address, name, watcher.emit, "it failed earlier and replace_failed is set")
        _wait_gone(custom, address, name)
        _create(custom, address, body)
        watcher.emit(f"[{name}] created {body['kind']} {watcher.namespace}/{name} again")
        return False
    watcher.emit(f"[{name}] adopted the existing {body['kind']} {watcher.namespace}/{name} (same spec)")
    return True


def _wait_gone(custom: Any, address: tuple[str, str, str, str], name: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _get(custom, address, name) is not None:
        if time.monotonic() > deadline:
            raise LaunchError(f"{name} was not deleted within {timeout_s:.0f} s")
        time.sleep(1.0)


def run_local(spec: TrainJobSpec, *, timeout_s: float = 24 * 3600, emit: Emit = print,
              cwd: str | None = None) -> Outcome:
    """The job of ``spec`` as one local node (:mod:`savflow.train.torchrun`), judged like a cluster job:
    :class:`JobFailed` on a non-zero exit, :class:`LaunchError` on the timeout."""
    started = time.monotonic()
    emit = secrets.masking(emit, extra=spec.env)
    with _sigterm_raises():
        try:
            torchrun.run(spec.worker_args, spec.procs_per_node, env=spec.env, module=spec.worker_module,
                         timeout_s=timeout_s, emit=emit, cwd=cwd)
        except torchrun.TorchrunFailed as exc:
            raise JobFailed("local", "exit status 1" if exc.code == 1 else f"exit status {exc.code}",
                            secrets.mask(exc.tail, extra=spec.env)) from None
        except torchrun.TorchrunTimeout as exc:
            raise LaunchError(str(exc)) from None
    return Outcome("local", "", False, time.monotonic() - started)
