"""Pure parts of the training launch: the spec, the worker's command line, the rendered shapes, the CLI."""

from __future__ import annotations

import argparse
import sys

import pytest
import yaml

from savflow.launch import cli as launch_cli, jobs as launcher, jobspec, pytorchjob, trainjob
from savflow.launch.jobspec import TrainJobSpec


def test_worker_args_keep_order_and_leave_out_unset_options() -> None:
    """In the order savflow.train.worker declares its options, which the worker's own parser reads back."""
    from savflow.train import worker

    args = jobspec.worker_args(config="c", train_frames="gs://b/f", epochs=3, resume="auto", seed=None,
                               overrides=["trainer.max_epochs=3", "a=b"])
    assert args == ("--config", "c", "--train-frames", "gs://b/f", "--resume", "auto", "--epochs", "3",
                    "--override", "trainer.max_epochs=3", "a=b")
    parsed = worker.build_parser().parse_args([*args, "--train-annotations", "x", "--experiment-dir", "e"])
    assert (parsed.epochs, parsed.resume, parsed.override) == (3, "auto", ["trainer.max_epochs=3", "a=b"])
    with pytest.raises(TypeError, match="epoch"):
        jobspec.worker_args(config="c", epoch=3)


def test_every_place_takes_the_workers_options_from_its_one_declaration() -> None:
    """launch-train exposes every worker option; the train component's worker parameters are worker options;
    the component's resource defaults are TrainJobSpec's (its source is embedded by KFP, so they are literals)."""
    import argparse
    import inspect

    from savflow.launch import component, train_step
    from savflow.train import worker

    parser = argparse.ArgumentParser()
    launch_cli.register(parser.add_subparsers())
    launch = parser._subparsers._group_actions[0].choices["launch-train"]  # noqa: SLF001
    assert set(worker.option_dests()) <= {a.dest for a in launch._actions}  # noqa: SLF001
    params = inspect.signature(component.train.python_func).parameters
    job_params = {"image", "run_id", "train_metrics", "loss_curve", "backend", "nodes", "gpus_per_node", "cpu",
                  "memory", "shm_size", "scratch_size", "node_selector", "tolerations", "service_account",
                  "credentials_secret", "queue_name", "namespace", "timeout_s", "overrides"}
    assert set(params) - job_params <= set(worker.option_dests())
    defaults = TrainJobSpec()
    for name in ("nodes", "gpus_per_node", "cpu", "memory", "shm_size", "service_account"):
        assert params[name].default == getattr(defaults, name), name
        assert inspect.signature(train_step.build_spec).parameters[name].default == getattr(defaults, name), name


def test_pytorchjob_shape_follows_nodes_and_gpus() -> None:
    spec = TrainJobSpec(worker_args=("--config", "c"), nodes=3, gpus_per_node=4, cpu="16")
    job = pytorchjob.render_pytorchjob(spec, "j", "ns")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    assert job["spec"]["nprocPerNode"] == "4"
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["torchrun", "-m", "savflow.train.worker", "--config", "c"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert {"name": "OMP_NUM_THREADS", "value": "4"} in container["env"]  # 16 CPUs over 4 processes
    single = pytorchjob.render_pytorchjob(TrainJobSpec(nodes=1, gpus_per_node=0), "j")
    assert set(single["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert single["spec"]["nprocPerNode"] == "1"
    assert "nvidia.com/gpu" not in single["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"][
        "containers"][0]["resources"]["limits"]
    assert "namespace" not in single["metadata"]


def test_trainjob_runs_the_same_command_and_sizes() -> None:
    spec = TrainJobSpec(worker_args=("--config", "c"), nodes=2, gpus_per_node=8, credentials_secret="key")
    job = trainjob.render_trainjob(spec, "j", "ns")
    assert job["spec"]["trainer"]["command"] == jobspec.worker_command(spec)
    assert (job["spec"]["trainer"]["numNodes"], job["spec"]["trainer"]["numProcPerNode"]) == (2, 8)
    env = {e["name"]: e["value"] for e in job["spec"]["trainer"]["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/secrets/savflow/gcp/key.json"
    assert not [name for name in env if name.startswith("PET_")]


def test_kubelet_timestamps_order_despite_trimmed_fractions() -> None:
    stamps = ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.05Z", "2024-05-01T10:00:00.5Z",
              "2024-05-01T10:00:00.500000001Z", "2024-05-01T10:00:01Z"]
    parsed = [launcher._parse_timestamp(s) for s in stamps]
    assert parsed == sorted(parsed) and len(set(parsed)) == len(parsed)
    assert sorted(stamps) != stamps  # as text they would not sort


def test_local_command_is_torchrun_standalone_over_the_worker() -> None:
    from savflow.train import torchrun

    assert torchrun.command(("--config", "c"), 2) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                      "--nnodes", "1", "--nproc-per-node", "2", "-m",
                                                      "savflow.train.worker", "--config", "c"]
    env = torchrun.environment(2, base={"PATH": "/bin", "RANK": "3", "PET_NNODES": "2", "HOME": "/h"})
    assert env["PATH"] == "/bin" and "RANK" not in env and "PET_NNODES" not in env


@pytest.mark.parametrize("text,expected", [
    ("nvidia.com/gpu:NoSchedule", {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}),
    ("pool=gpu:NoExecute", {"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}),
    ("spot=true", {"key": "spot", "operator": "Equal", "value": "true"}),
])
def test_tolerations_parse_like_kubectl_taint(text: str, expected: dict[str, str]) -> None:
    assert launch_cli.parse_toleration(text) == expected


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    launch_cli.register(parser.add_subparsers())
    return parser.parse_args(["launch-train", *argv])


DATA = ["--train-frames", "gs://b/s/JPEGImages_24fps", "--train-annotations", "gs://b/s/annotations",
        "--experiment-dir", "gs://b/e"]


def test_cli_builds_the_spec_and_prints_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["--name", "sav-1", "--namespace", "ml", "--nodes", "2", "--gpus-per-node", "4",
                   "--node-selector", "pool=a100", "--toleration", "pool=a100:NoSchedule", "--env", "NCCL_DEBUG=INFO",
                   *DATA, "--config", "c", "--epochs", "2", "--override", "x=1", "--print-manifest"])
    spec = launch_cli.spec_from_args(args)
    assert spec.worker_args == ("--config", "c", "--train-frames", "gs://b/s/JPEGImages_24fps", "--train-annotations",
                                "gs://b/s/annotations", "--experiment-dir", "gs://b/e", "--epochs", "2",
                                "--override", "x=1")
    assert spec.node_selector == {"pool": "a100"} and spec.env == {"NCCL_DEBUG": "INFO"}
    assert spec.tolerations == ({"key": "pool", "operator": "Equal", "value": "a100", "effect": "NoSchedule"},)
    assert args.func(args) == 0
    assert yaml.safe_load(capsys.readouterr().out) == pytorchjob.render_pytorchjob(spec, "sav-1", "ml")
    assert launch_cli.spec_from_args(_parse(["--name", "n", "--config", "c", *DATA])).tolerations == (
        jobspec.GPU_TOLERATION,)


def test_queued_jobs_carry_kueues_label_and_start_suspended() -> None:
    """Kueue admits a job labelled with kueue.x-k8s.io/queue-name as one workload; created suspended, no pod
    starts before admission."""
    spec = jobspec.TrainJobSpec(worker_args=("--config", "c"), nodes=4, queue_name="gpu-queue")
    for body in (pytorchjob.render_pytorchjob(spec, "j"), trainjob.render_trainjob(spec, "j")):
        assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert pytorchjob.render_pytorchjob(spec, "j")["spec"]["runPolicy"]["suspend"] is True
    assert trainjob.render_trainjob(spec, "j")["spec"]["suspend"] is True
    plain = jobspec.TrainJobSpec(worker_args=("--config", "c"))
    assert "kueue.x-k8s.io/queue-name" not in pytorchjob.render_pytorchjob(plain, "j")["metadata"]["labels"]
    assert pytorchjob.render_pytorchjob(plain, "j")["spec"]["runPolicy"]["suspend"] is False


def test_backoff_limit_scales_with_the_nodes() -> None:
    """The operator sums restarts over all pods, and one failure restarts every node."""
    for nodes in (1, 2, 8):
        spec = jobspec.TrainJobSpec(worker_args=("--config", "c"), nodes=nodes)
        assert pytorchjob.render_pytorchjob(spec, "j")["spec"]["runPolicy"]["backoffLimit"] == \
            jobspec.FAILURES_TOLERATED * nodes
    fixed = jobspec.TrainJobSpec(worker_args=("--config", "c"), nodes=8, backoff_limit=5)
    assert pytorchjob.render_pytorchjob(fixed, "j")["spec"]["runPolicy"]["backoffLimit"] == 5
