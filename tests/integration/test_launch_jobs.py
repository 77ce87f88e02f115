"""The launcher against an HTTP-level Kubernetes API fake, through the real ``kubernetes`` client; and locally.

The fake (tests/kube_fake.py) serves the CRDs of the operator releases a test installs and applies strict field
validation against them. A small fake operator, also talking HTTP through the real client,
plays the Training Operator's part: it creates the master pod, posts events, appends to the pod's log (served by
a kmock reaction on ``pods/{name}/log``) and moves the job's status conditions, so the launcher sees what it
would see on a cluster. kmock ignores label and field selectors, which these tests do not rely on.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from kube_fake import FakeCluster
from kubernetes import client

from savflow.launch import jobs as launcher
from savflow.launch.jobspec import TrainJobSpec, worker_args
from savflow.launch.jobs import PYTORCHJOB, TRAINJOB, JobKind

NS = "ml"
SPEC = TrainJobSpec(worker_args=worker_args(config="sam2.1_tiny128_sav_finetune", epochs=1), nodes=2,
                    gpus_per_node=1)


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    """The fake with the newest supported operators' CRDs installed."""
    with FakeCluster() as fake:
        fake.install("PyTorchJob", "1.9")
        fake.install("TrainJob", "2.3")
        yield fake


def _stamp() -> str:
    """Now as the kubelet writes it: RFC 3339 with nanoseconds and the trailing zeros trimmed."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000".rstrip("0") + "Z"


class FakeOperator(threading.Thread):
    """Plays the training operator for one job: pod, events, log lines, status conditions, in that order."""

    def __init__(self, cluster: FakeCluster, kind: JobKind, name: str, end: tuple[str, str, str] | None,
                 lines: int = 4, after_delete: bool = False) -> None:
        super().__init__(daemon=True)
        self.cluster, self.kind, self.name, self.end, self.lines = cluster, kind, name, end, lines
        self.after_delete = after_delete
        api = cluster.client()
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.pod = f"{name}-master-0" if kind is PYTORCHJOB else f"{name}-node-0-0-x7k2p"
        self.log: list[bytes] = []
        self.conditions: list[dict[str, str]] = []
        self.error: BaseException | None = None
        cluster.api["get", f"/api/v1/namespaces/{NS}/pods/{self.pod}/log"] << (lambda: b"".join(self.log))

    def say(self, text: str) -> None:
        self.log.append(f"{_stamp()} {text}\n".encode())

    def condition(self, kind: str, reason: str, message: str) -> None:
        self.conditions.append({"type": kind, "status": "True", "reason": reason, "message": message,
                                "lastTransitionTime": datetime.now(timezone.utc).isoformat()})
        self.custom.patch_namespaced_custom_object_status(
            self.kind.group, self.kind.version, NS, self.kind.plural, self.name,
            {"status": {"conditions": list(self.conditions)}})

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test through self.error
            self.error = exc

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        while self.after_delete and not self.cluster.requests("DELETE", self.kind.plural):
            assert time.monotonic() < deadline, "the launcher never deleted the old job"
            time.sleep(0.02)
        while True:
            try:
                self.custom.get_namespaced_custom_object(self.kind.group, self.kind.version, NS, self.kind.plural,
                                                         self.name)
                break
            except client.ApiException:
                assert time.monotonic() < deadline, "the launcher never created the job"
                time.sleep(0.02)
        self.core.create_namespaced_pod(NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": self.pod, "namespace": NS}, "spec": {"containers": [{"name": self.kind.container,
                                                                         "image": SPEC.image}]}})
        self.core.create_namespaced_event(NS, {"apiVersion": "v1", "kind": "Event", "metadata": {
            "name": f"{self.pod}.1", "namespace": NS}, "type": "Normal", "reason": "Scheduled", "count": 1,
            "message": f"Successfully assigned {NS}/{self.pod}", "involvedObject": {"kind": "Pod", "name": self.pod}})
        self.condition("Created", "JobCreated", f"{self.name} is created.")
        time.sleep(0.1)
        self.say("starting")
        self.condition("Running", "JobRunning", f"{self.name} is running.")
        for i in range(1, self.lines):
            time.sleep(0.05)
            self.say(f"step {i}")
        time.sleep(0.1)
        if self.end is not None:
            self.condition(*self.end)


def _run_with_operator(operator: FakeOperator, **kwargs: Any) -> tuple[launcher.Outcome, list[str]]:
    emitted: list[str] = []
    operator.start()
    try:
        outcome = launcher.launch(SPEC, operator.name, namespace=NS, kind=operator.kind,
                                  api_client=operator.cluster.client(), poll_s=0.03, timeout_s=30,
                                  emit=emitted.append, **kwargs)
    finally:
        operator.join(10)
    assert operator.error is None, operator.error
    return outcome, emitted


def _log_lines(emitted: list[str], pod: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in emitted if line.startswith(f"[{pod}] ")]


@pytest.mark.parametrize("kind,done", [(PYTORCHJOB, "Succeeded"), (TRAINJOB, "Complete")],
                         ids=["pytorchjob", "trainjob"])
def test_success_streams_status_events_and_each_log_line_once(cluster: FakeCluster, kind: JobKind,
                                                              done: str) -> None:
    operator = FakeOperator(cluster, kind, "sav-ok", (done, "JobSucceeded", "sav-ok successfully completed."))
    outcome, emitted = _run_with_operator(operator)
    assert outcome.name == "sav-ok" and outcome.namespace == NS and not outcome.adopted
    # The log is re-read every poll (kmock ignores sinceSeconds); timestamps keep each line to one emission.
    assert _log_lines(emitted, operator.pod) == ["starting", "step 1", "step 2", "step 3"]
    text = "\n".join(emitted)
    for condition in ("Created=True", "Running=True", f"{done}=True"):
        assert text.count(f"condition {condition}") == 1, text
    assert text.count("event Normal Pod/" + operator.pod + " Scheduled") == 1
    assert len(cluster.requests("POST", kind.plural)) == 1
    created = cluster.requests("POST", kind.plural)[0].data
    expected = kind.render(SPEC, "sav-ok", NS)
    assert created["spec"] == expected["spec"]
    assert created["metadata"]["annotations"][launcher.SPEC_HASH_ANNOTATION] == launcher.spec_hash(expected)


def test_failed_job_raises_with_the_operators_reason(cluster: FakeCluster) -> None:
    operator = FakeOperator(cluster, PYTORCHJOB, "sav-bad",
                            ("Failed", "PyTorchJobFailed", "PyTorchJob ml/sav-bad is failed because 1 Master "
                             "replica(s) failed."))
    with pytest.raises(launcher.JobFailed) as info:
        _run_with_operator(operator)
    assert info.value.reason == "PyTorchJobFailed"
    assert "1 Master replica(s) failed" in info.value.message
    assert "sav-bad failed: PyTorchJobFailed" in str(info.value)


def _create_as_earlier_attempt(cluster: FakeCluster, name: str, spec: TrainJobSpec,
                               conditions: list[dict[str, str]]) -> None:
    """What an earlier attempt of the step left behind: the job it created, with the status it reached."""
    body = PYTORCHJOB.render(spec, name, NS)
    body["metadata"]["annotations"] = {launcher.SPEC_HASH_ANNOTATION: launcher.spec_hash(body)}
    custom = client.CustomObjectsApi(cluster.client())
    custom.create_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", body)
    custom.patch_namespaced_custom_object_status("kubeflow.org", "v1", NS, "pytorchjobs", name,
                                                 {"status": {"conditions": conditions}})


def test_retry_adopts_the_running_job_instead_of_creating_another(cluster: FakeCluster) -> None:
    _create_as_earlier_attempt(cluster, "sav-retry", SPEC, [])
    operator = FakeOperator(cluster, PYTORCHJOB, "sav-retry", ("Succeeded", "JobSucceeded", "done"))
    outcome, emitted = _run_with_operator(operator)
    assert outcome.adopted
    assert any("adopted the existing PyTorchJob" in line for line in emitted)
    # Two POSTs reached the server (the earlier attempt's, and ours answered 409); one job exists, never deleted.
    assert [r.data["metadata"]["name"] for r in cluster.requests("POST", "pytorchjobs")] == ["sav-retry"] * 2
    assert cluster.requests("DELETE", "pytorchjobs") == []
    jobs = client.CustomObjectsApi(cluster.client()).list_namespaced_custom_object("kubeflow.org", "v1", NS,
                                                                                  "pytorchjobs")
    assert [j["metadata"]["name"] for j in jobs["items"]] == ["sav-retry"]


def test_a_different_job_under_the_same_name_is_not_adopted(cluster: FakeCluster) -> None:
    other = TrainJobSpec(worker_args=worker_args(config="someone-elses"), nodes=1)
    _create_as_earlier_attempt(cluster, "sav-taken", other, [])
    with pytest.raises(launcher.LaunchError, match="already exists .* with a different spec"):
        launcher.launch(SPEC, "sav-taken", namespace=NS, api_client=cluster.client(), poll_s=0.03, timeout_s=5,
                        emit=lambda line: None)
    assert cluster.requests("DELETE", "pytorchjobs") == []


def test_a_failed_earlier_job_is_reported_or_replaced(cluster: FakeCluster) -> None:
    failed = [{"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": "OOMKilled"}]
    _create_as_earlier_attempt(cluster, "sav-again", SPEC, failed)
    with pytest.raises(launcher.JobFailed, match="OOMKilled"):
        launcher.launch(SPEC, "sav-again", namespace=NS, api_client=cluster.client(), poll_s=0.03, timeout_s=5,
                        emit=lambda line: None)
    operator = FakeOperator(cluster, PYTORCHJOB, "sav-again", ("Succeeded", "JobSucceeded", "done"),
                            after_delete=True)
    outcome, emitted = _run_with_operator(operator, replace_failed=True)
    assert not outcome.adopted
    assert len(cluster.requests("DELETE", "pytorchjobs")) == 1
    assert any("created PyTorchJob ml/sav-again again" in line for line in emitted)


def test_sigterm_deletes_the_job(cluster: FakeCluster) -> None:
    operator = FakeOperator(cluster, PYTORCHJOB, "sav-cancel", end=None)
    running = threading.Event()

    def emit(line: str) -> None:
        if "condition Running=True" in line:
            running.set()

    def terminate_when_running() -> None:
        if running.wait(20):
            os.kill(os.getpid(), signal.SIGTERM)

    operator.start()
    killer = threading.Thread(target=terminate_when_running, daemon=True)
    killer.start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(launcher.LaunchCancelled):
        launcher.launch(SPEC, "sav-cancel", namespace=NS, api_client=cluster.client(), poll_s=0.03, timeout_s=30,
                        emit=emit)
    killer.join(5)
    operator.join(10)
    assert signal.getsignal(signal.SIGTERM) is before
    assert [r.name for r in cluster.requests("DELETE", "pytorchjobs")] == ["sav-cancel"]
    with pytest.raises(client.ApiException) as info:
        client.CustomObjectsApi(cluster.client()).get_namespaced_custom_object("kubeflow.org", "v1", NS,
                                                                               "pytorchjobs", "sav-cancel")
    assert info.value.status == 404


def test_overall_timeout_deletes_the_job_and_fails(cluster: FakeCluster) -> None:
    with pytest.raises(launcher.LaunchError, match="did not finish within"):
        launcher.launch(SPEC, "sav-slow", namespace=NS, api_client=cluster.client(), poll_s=0.05, timeout_s=0.3,
                        emit=lambda line: None)
    assert [r.name for r in cluster.requests("DELETE", "pytorchjobs")] == ["sav-slow"]


FAKE_WORKER = """
import os, sys
if os.environ.get("FAKE_WORKER_EXIT"):
    print(f"rank {os.environ['RANK']} exits with {os.environ['FAKE_WORKER_EXIT']}", flush=True)
    sys.exit(int(os.environ["FAKE_WORKER_EXIT"]))

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
total = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(total)
# One write per line: two ranks share the pipe, and a pipe write this small is never interleaved.
os.write(1, (f"rank {dist.get_rank()} of {dist.get_world_size()} sum {total.item():.0f} "
             f"threads {os.environ['OMP_NUM_THREADS']} args {' '.join(sys.argv[1:])}\\n").encode())
dist.destroy_process_group()
"""


def _local_spec(tmp_path: Path, **env: str) -> TrainJobSpec:
    (tmp_path / "fake_worker.py").write_text(FAKE_WORKER)
    return TrainJobSpec(worker_module="fake_worker", worker_args=("--config", "tiny"), gpus_per_node=2,
                        env={"PYTHONPATH": str(tmp_path), **env})


def test_local_backend_runs_the_worker_under_torchrun(tmp_path: Path) -> None:
    emitted: list[str] = []
    outcome = launcher.run_local(_local_spec(tmp_path), timeout_s=120, emit=emitted.append)
    assert outcome.name == "local"
    ranks = sorted(line for line in emitted if line.startswith("rank "))
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert ranks == [f"rank {r} of 2 sum 3 threads {threads} args --config tiny" for r in (0, 1)]
    assert emitted[0].startswith(f"[local] {sys.executable} -m torch.distributed.run --standalone")


def test_local_backend_failure_raises_with_exit_status_and_output(tmp_path: Path) -> None:
    with pytest.raises(launcher.JobFailed) as info:
        launcher.run_local(_local_spec(tmp_path, FAKE_WORKER_EXIT="3"), timeout_s=120, emit=lambda line: None)
    # torchrun exits 1 when a worker fails; its summary (kept in the message) names the worker's own status.
    assert info.value.reason == "exit status 1"
    assert "exitcode  : 3" in info.value.message


def test_a_retried_train_step_replaces_its_failed_job(cluster: FakeCluster, tmp_path: Path) -> None:
    """A KFP retry keeps the run id, so the step asks for the same job name: the failed job of the first
    attempt must be deleted and created again (training resumes from the last checkpoint), not re-read."""
    import json

    from savflow.common import storage
    from savflow.common import checkpoints
    from savflow.launch import train_step as step

    name = step.job_name("run-7f3a")
    failed = [{"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": "node lost"}]
    _create_as_earlier_attempt(cluster, name, SPEC, failed)
    exp = str(tmp_path / "exp")
    info = checkpoints.CheckpointInfo(step=12, epoch=2, checkpoint=f"{exp}/checkpoints/000000012/checkpoint.pt",
                                      model=f"{exp}/checkpoints/000000012/model.pt")
    storage.write_text(f"{exp}/checkpoints/{checkpoints.LATEST}", json.dumps(info.__dict__))
    storage.write_text(f"{exp}/{checkpoints.METRICS}", json.dumps({"steps": 12}))
    operator = FakeOperator(cluster, PYTORCHJOB, name, ("Succeeded", "JobSucceeded", "done"), after_delete=True)
    operator.start()
    try:
        result = step.run_train_step(SPEC, backend="pytorchjob", run_id="run-7f3a", experiment_dir=exp,
                                     namespace=NS, timeout_s=30, api_client=cluster.client(), poll_s=0.03)
    finally:
        operator.join(10)
    assert operator.error is None, operator.error
    assert [r.name for r in cluster.requests("DELETE", "pytorchjobs")] == [name]
    # the first attempt's create, ours answered 409, ours again after the delete
    assert len(cluster.requests("POST", "pytorchjobs")) == 3
    assert result.step == 12 and result.checkpoint == info.model


@pytest.mark.parametrize("release", ["2.0", "2.1"])
def test_trainjob_on_an_old_trainer_is_refused_before_anything_is_created(release: str) -> None:
    with FakeCluster() as fake:
        fake.install("TrainJob", release)
        with pytest.raises(launcher.LaunchError, match=f"Trainer v{release} is installed; savflow needs v2.2"):
            launcher.launch(SPEC, "sav-old", namespace=NS, kind=TRAINJOB, api_client=fake.client(), timeout_s=5,
                            emit=lambda line: None)
        assert fake.requests("POST", "trainjobs") == []


def test_a_missing_operator_is_named() -> None:
    with FakeCluster() as fake:
        with pytest.raises(launcher.LaunchError, match="Training Operator .* is not installed: .*pytorchjobs"):
            launcher.launch(SPEC, "sav-none", namespace=NS, api_client=fake.client(), timeout_s=5,
                            emit=lambda line: None)


def test_creates_are_strict_so_no_field_is_dropped_silently() -> None:
    """Even past the release check, a field the installed CRD lacks fails the create with its name, where the
    client's default (fieldValidation Warn) would let the API server prune it."""
    unchecked = dataclasses.replace(TRAINJOB, check_crd=lambda crd: None)
    with FakeCluster() as fake:
        fake.install("TrainJob", "2.1")
        with pytest.raises(launcher.LaunchError, match='unknown field "spec.runtimePatches"'):
            launcher.launch(SPEC, "sav-strict", namespace=NS, kind=unchecked, api_client=fake.client(), timeout_s=5,
                            emit=lambda line: None)
        (post,) = fake.requests("POST", "trainjobs")
        assert post.params["fieldValidation"] == "Strict"
        jobs = client.CustomObjectsApi(fake.client()).list_namespaced_custom_object(
            "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs")
        assert jobs["items"] == []
